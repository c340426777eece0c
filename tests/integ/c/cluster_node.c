/* cluster_node.c - a cluster member for the cluster integration tests and the
 * benchmark (test-cluster_node).
 *
 * Distribution and cluster settings come from the environment like every
 * binary (ONEBLOG_NODE, ONEBLOG_COOKIE, ONEBLOG_CLUSTER_*), plus:
 *
 *   CLUSTER_SERVICES="cms:1.2,client:0.9"  a gen_server per service, joined to
 *                    the registry; a call answers {Node, Zone, Service}
 *   CLUSTER_PROBE=svc  every CLUSTER_PROBE_MS (200) cn_cluster_call(svc, ping)
 *                    and print "probe NODE ZONE" (or "probe none RC")
 *   CLUSTER_EXPECT_NODES=N, CLUSTER_EXPECT_MEMBERS=M  print "full at MS" (wall
 *                    clock, ms) the first time N nodes are up and M members
 *                    registered (the benchmark's end point)
 *
 * Output lines the shell tests grep for:
 *   hook up NODE | hook down NODE          the mesh's connect/disconnect hook
 *   view up=U listed=L members=M nodes=A,B,...   when the view changes (every
 *                    50 ms check); nodes = distinct nodes that have members
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"
#include "cnode/node.h"
#include "cnode/proc.h"

static const char *zone_g = "";

static void on_node(void *ud, const char *node, bool up)
{
    (void)ud;
    printf("hook %s %s\n", up ? "up" : "down", node);
    fflush(stdout);
}

/* ---- the service servers ------------------------------------------------------ */

static int svc_init(void *arg, void **state)
{
    *state = arg;
    return 0;
}

static int svc_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)req, (void)from;
    ei_x_encode_tuple_header(reply, 3);
    ei_x_encode_atom(reply, cn_node_name(cn_node_self()));
    ei_x_encode_binary(reply, zone_g, (long)strlen(zone_g));
    ei_x_encode_atom(reply, state);
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t svc_server = { .init = svc_init, .handle_call = svc_call };

/* ---- the main process --------------------------------------------------------- */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void probe(const char *svc)
{
    ei_x_buff x;
    cn_x_new(&x);
    ei_x_encode_atom(&x, "ping");
    cn_msg_t *m;
    cn_term_t r;
    cn_cluster_member_t who;
    int rc = cn_cluster_call(svc, &x, 2000, &m, &r, &who);
    if (rc < 0) {
        printf("probe none %d\n", rc);
        return;
    }
    printf("probe %s %s\n", who.node, who.zone[0] ? who.zone : "-");
    cn_msg_free(m);
}

static void main_proc(void *arg)
{
    (void)arg;
    char *services = getenv("CLUSTER_SERVICES") ? strdup(getenv("CLUSTER_SERVICES")) : NULL;
    for (char *save = NULL, *tok = services ? strtok_r(services, ",", &save) : NULL; tok;
         tok = strtok_r(NULL, ",", &save)) {
        char *ver = strchr(tok, ':');
        if (ver)
            *ver++ = '\0';
        cn_pid_t pid;
        char *name = strdup(tok); /* kept for the server's life */
        int rc = cn_gen_server_start(cn_node_self(), &svc_server, name, NULL, &pid);
        if (rc == 0)
            rc = cn_cluster_join(name, pid, ver ? ver : "");
        if (rc < 0)
            printf("join %s failed: %s\n", name, cn_strerror(rc));
    }
    free(services);
    const char *probe_svc = getenv("CLUSTER_PROBE");
    int probe_ms = getenv("CLUSTER_PROBE_MS") ? atoi(getenv("CLUSTER_PROBE_MS")) : 200;
    int expect_nodes = getenv("CLUSTER_EXPECT_NODES") ? atoi(getenv("CLUSTER_EXPECT_NODES")) : -1;
    int expect_members =
        getenv("CLUSTER_EXPECT_MEMBERS") ? atoi(getenv("CLUSTER_EXPECT_MEMBERS")) : -1;
    bool full_seen = false;
    printf("started at %llu\n", (unsigned long long)wall_ms());
    fflush(stdout);

    char last[4096] = "";
    uint64_t next_probe = cn_now_ms();
    static char names[64][CN_CLUSTER_NAME_MAX];
    static bool up[64];
    static cn_cluster_member_t mem[256];
    for (;;) {
        int listed = cn_cluster_nodes(names, up, 64);
        int nup = 0;
        for (int i = 0; i < listed && i < 64; i++)
            nup += up[i];
        int nm = cn_cluster_members(NULL, mem, 256);
        char view[4096];
        int len = snprintf(view, sizeof(view), "view up=%d listed=%d members=%d nodes=", nup,
                           listed, nm);
        for (int i = 0; i < nm && i < 256 && len < (int)sizeof(view) - 300; i++) {
            bool dup = false;
            for (int k = 0; k < i && !dup; k++)
                dup = strcmp(mem[k].node, mem[i].node) == 0;
            if (!dup)
                len += snprintf(view + len, sizeof(view) - (size_t)len, "%s%s",
                                view[len - 1] == '=' ? "" : ",", mem[i].node);
        }
        if (strcmp(view, last) != 0) {
            printf("%s\n", view);
            strcpy(last, view);
        }
        if (!full_seen && expect_nodes >= 0 && nup >= expect_nodes && nm >= expect_members) {
            full_seen = true;
            printf("full at %llu\n", (unsigned long long)wall_ms());
        }
        if (probe_svc && cn_now_ms() >= next_probe) {
            probe(probe_svc);
            next_probe = cn_now_ms() + (uint64_t)probe_ms;
        }
        fflush(stdout);
        cn_sleep(expect_nodes >= 0 && !full_seen ? 5 : 50);
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    cn_dist_opts_t d;
    if (cn_dist_opts_from_env(&d, argc, argv) < 0) {
        fprintf(stderr, "bad distribution options\n");
        return 2;
    }
    cn_cluster_opts_t co;
    if (cn_cluster_opts_from_env(&co) < 0) {
        fprintf(stderr, "bad cluster options\n");
        return 2;
    }
    co.on_node = on_node;
    zone_g = co.zone ? co.zone : "";
    cn_node_opts_t no = { .name = d.node_name };
    cn_node_t *node;
    int rc;
    if ((rc = cn_node_new(&no, &node)) < 0 || (rc = cn_dist_start(node, &d)) < 0 ||
        (rc = cn_cluster_start(node, &co)) < 0) {
        fprintf(stderr, "start failed: %s\n", cn_strerror(rc));
        return 1;
    }
    cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK, .stack_size = 256 << 10 };
    cn_spawn(node, main_proc, NULL, &so, NULL);
    rc = cn_node_run(node);
    cn_node_free(node);
    return rc < 0 ? 1 : 0;
}
