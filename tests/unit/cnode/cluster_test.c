/* cluster_test.c - unit tests of the cluster module: the static list parser, the
 * pick rules (zone first, fewest outstanding, round robin) on a hand-made
 * registry, and three nodes in one process (one scheduler thread each, no EPMD)
 * forming a mesh with the static strategy: registry sync, zone-preferring calls,
 * hooks, a stopped node leaving the registry, forgetting a node that leaves the
 * list. */
#include "test.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>

#include "cluster_int.h"
#include "cnode/cluster.h"
#include "cnode/dist.h"
#include "cnode/gen_server.h"

/* ---- static list --------------------------------------------------------------- */

TEST(static_list_parse)
{
    cl_names_t l = { 0 };
    ASSERT_EQ(cn__cluster_static_parse(" a@h1, b@h2,,c@10.0.0.1 ,a@h1", &l), 0);
    ASSERT_EQ(l.n, 3);
    ASSERT_STR_EQ(l.v[0], "a@h1");
    ASSERT_STR_EQ(l.v[2], "c@10.0.0.1");
    ASSERT(cn__names_has(&l, "b@h2"));
    cn__names_free(&l);
    ASSERT_EQ(cn__cluster_static_parse("a@h1,nohost", &l), -EINVAL);
    cn__names_free(&l);
    ASSERT_EQ(cn__cluster_static_parse("@h", &l), -EINVAL);
    cn__names_free(&l);
    ASSERT_EQ(cn__cluster_static_parse("a@", &l), -EINVAL);
    cn__names_free(&l);
    ASSERT_EQ(cn__cluster_static_parse("", &l), 0);
    ASSERT_EQ(l.n, 0);
}

/* ---- pick on a hand-made registry ---------------------------------------------- */

static cn__cluster_t fake;
static int pick_counts[8];

static void add_member(cn_node_t *n, const char *node, const char *svc, const char *zone,
                       uint32_t num)
{
    cl_member_t *m = &fake.members[fake.nmembers++];
    memset(m, 0, sizeof(*m));
    snprintf(m->service, sizeof(m->service), "%s", svc);
    snprintf(m->zone, sizeof(m->zone), "%s", zone);
    ASSERT_EQ(cn__node_name_index(n, node, &m->pid.node), 0);
    m->pid.num = num;
    m->pid.serial = 1;
    m->pid.creation = 1;
}

static void pick_proc(void *arg)
{
    (void)arg;
    cn_cluster_member_t m;
    /* nobody in our zone for recs: falls back to the other zone */
    ASSERT_EQ(cn_cluster_pick("recs", &m), 0);
    ASSERT_STR_EQ(m.zone, "z2");
    ASSERT_EQ(cn_cluster_pick("nosuch", &m), -ENOENT);
    /* cms: members 1, 2 in z1 (ours), 3 in z2; ties rotate between 1 and 2 */
    for (int i = 0; i < 100; i++) {
        ASSERT_EQ(cn_cluster_pick("cms", &m), 0);
        ASSERT_STR_EQ(m.zone, "z1");
        pick_counts[m.pid.num]++;
    }
    ASSERT_EQ(pick_counts[3], 0);
    ASSERT(pick_counts[1] >= 30 && pick_counts[2] >= 30);
    /* fewer outstanding calls wins within the zone */
    fake.members[0].outstanding = 5;
    for (int i = 0; i < 10; i++) {
        ASSERT_EQ(cn_cluster_pick("cms", &m), 0);
        ASSERT_EQ(m.pid.num, 2u);
    }
    /* but the zone comes first: a busy same-zone member beats an idle other zone */
    fake.members[1].outstanding = 7;
    ASSERT_EQ(cn_cluster_pick("cms", &m), 0);
    ASSERT_EQ(m.pid.num, 1u);
    cn_cluster_member_t all[8];
    ASSERT_EQ(cn_cluster_members("cms", all, 8), 3);
    ASSERT_EQ(cn_cluster_members(NULL, all, 2), 4);
    ASSERT_STR_EQ(all[0].node, "a@h"); /* sorted by node */
}

TEST(pick_prefers_zone_then_load_then_rotates)
{
    cn_node_t *n;
    cn_node_opts_t o = { .name = "me@h" };
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    static cl_member_t members[8];
    memset(&fake, 0, sizeof(fake));
    fake.node = n;
    fake.members = members;
    fake.capmembers = 8;
    char zone[] = "z1";
    fake.zone = zone;
    cn__cur_node = n;
    add_member(n, "a@h", "cms", "z1", 1);
    add_member(n, "b@h", "cms", "z1", 2);
    add_member(n, "c@h", "cms", "z2", 3);
    add_member(n, "c@h", "recs", "z2", 4);
    cn__cur_node = NULL;
    n->cluster = &fake;
    ASSERT_EQ(cn_spawn(n, pick_proc, NULL, NULL, NULL), 0);
    ASSERT_EQ(cn_node_run(n), 0);
    n->cluster = NULL;
    cn_node_free(n);
}

/* ---- three nodes ---------------------------------------------------------------- */

typedef struct tnode {
    cn_node_t *node;
    char name[64];
    const char *zone;
    atomic_int ups, downs;    /* hook calls */
    atomic_int stop;          /* main thread asks the node to stop */
    atomic_int done;          /* the node's test process finished */
    int result;
} tnode_t;

static tnode_t tn[3];
static atomic_int phase;

static void on_node(void *ud, const char *node, bool up)
{
    tnode_t *t = ud;
    (void)node;
    if (up)
        atomic_fetch_add(&t->ups, 1);
    else
        atomic_fetch_add(&t->downs, 1);
}

static void quiet(void *ud, int level, const char *msg)
{
    (void)ud, (void)level, (void)msg;
}

static int svc_init(void *arg, void **state)
{
    *state = arg;
    return 0;
}

static int svc_call(void *state, cn_term_t req, const cn_from_t *from, ei_x_buff *reply)
{
    (void)req, (void)from, (void)state;
    ei_x_encode_atom(reply, cn_node_name(cn_node_self()));
    return CN_GS_CONTINUE;
}

static const cn_gen_server_t svc = { .init = svc_init, .handle_call = svc_call };

/* Wait for cond() inside a node's process; true if it held. Everything waited
 * for here must happen, so the limit is generous (test.h, WAIT_UNTIL). */
#define WAIT_FOR(cond) WAIT_UNTIL(cond, 20000, cn_sleep(10))

/* Nodes that have seen the full mesh: node 0 has node 1 stopped only once all
 * three have, or a slow node 2 would wait for three members that never come. */
static atomic_int meshed;

static void node_proc(void *arg)
{
    tnode_t *t = arg;
    cn_pid_t pid;
    ASSERT_EQ(cn_gen_server_start(t->node, &svc, NULL, NULL, &pid), 0);
    ASSERT_EQ(cn_cluster_join("cms", pid, "1.0"), 0);
    ASSERT_EQ(cn_cluster_join("cms", pid, "1.0"), 0); /* twice is once */
    ASSERT_EQ(cn_cluster_join("bad name too long for a service atom 0123456789012345678901234567890",
                              pid, "1"), -EINVAL);
    /* Every node sees the three cms members and two connected peers. */
    char names[4][CN_CLUSTER_NAME_MAX];
    bool up[4];
    ASSERT(WAIT_FOR(cn_cluster_members("cms", NULL, 0) == 3));
    ASSERT(WAIT_FOR(cn_cluster_nodes(names, up, 4) == 2 && up[0] && up[1]));
    cn_cluster_member_t m[4];
    ASSERT_EQ(cn_cluster_members("cms", m, 4), 3);
    ASSERT_STR_EQ(m[0].node, t->name); /* ours first */
    ASSERT_STR_EQ(m[0].version, "1.0");
    ASSERT_STR_EQ(m[0].zone, t->zone);
    atomic_fetch_add(&meshed, 1);

    if (t == &tn[0]) {
        /* Node 0 (zone z1) calls: only node 1 (z1) or itself, never node 2 (z2). */
        for (int i = 0; i < 20; i++) {
            ei_x_buff x;
            cn_x_new(&x);
            ei_x_encode_atom(&x, "ping");
            cn_msg_t *msg;
            cn_term_t r;
            cn_cluster_member_t who;
            ASSERT_EQ(cn_cluster_call("cms", &x, 10000, &msg, &r, &who), 0);
            char answer[64];
            int i2 = r.index;
            ASSERT_EQ(ei_decode_atom(r.buf, &i2, answer), 0);
            ASSERT_STR_EQ(answer, who.node);
            ASSERT(strcmp(answer, tn[2].name) != 0);
            ASSERT_STR_EQ(who.zone, "z1");
            cn_msg_free(msg);
        }
        ASSERT(WAIT_FOR(atomic_load(&meshed) == 3));
        atomic_store(&phase, 1); /* main thread stops node 1 now */
        /* Node 1 leaves the registry; calls still work (node 0 itself). */
        ASSERT(WAIT_FOR(cn_cluster_members("cms", NULL, 0) == 2));
        ASSERT(WAIT_FOR(atomic_load(&t->downs) == 1));
        /* A leave is seen by the other node too. */
        ASSERT_EQ(cn_cluster_leave("cms", pid), 0);
        ASSERT_EQ(cn_cluster_leave("cms", pid), -ENOENT);
        ASSERT_EQ(cn_cluster_members("cms", NULL, 0), 1);
        atomic_store(&phase, 2);
    } else if (t == &tn[2]) {
        /* after node 0's own waits: longer */
        ASSERT(WAIT_UNTIL(atomic_load(&phase) == 2, 45000, cn_sleep(10)));
        ASSERT(WAIT_FOR(cn_cluster_members("cms", NULL, 0) == 1));
        /* Only node 2's own member is left; node 0 falls back to it. */
        ASSERT_EQ(cn_cluster_members("cms", m, 4), 1);
        ASSERT_STR_EQ(m[0].node, t->name);
    } else {
        ASSERT(WAIT_UNTIL(atomic_load(&t->stop), 45000, cn_sleep(10)));
        atomic_store(&t->done, 1);
        cn_node_stop(t->node);
        return;
    }
    ASSERT(atomic_load(&t->ups) >= 2);
    atomic_store(&t->done, 1);
    t->result = 1;
    cn_node_stop(t->node);
}

static void *run_node(void *arg)
{
    tnode_t *t = arg;
    cn_node_run(t->node);
    cn_node_free(t->node);
    return NULL;
}

TEST(three_nodes_mesh_registry_zone_calls)
{
    const char *zones[3] = { "z1", "z1", "z2" };
    cn_dist_opts_t d = { .cookie = "clu", .epmd_less = true, .log = quiet };
    for (int i = 0; i < 3; i++) {
        tnode_t *t = &tn[i];
        snprintf(t->name, sizeof(t->name), "n%d_%d@127.0.0.1", i, (int)getpid());
        t->zone = zones[i];
        cn_node_opts_t o = { .name = t->name };
        ASSERT_EQ(cn_node_new(&o, &t->node), 0);
        ASSERT_EQ(cn_dist_start(t->node, &d), 0);
    }
    char list[256];
    snprintf(list, sizeof(list), "%s,%s,%s", tn[0].name, tn[1].name, tn[2].name);
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 3; k++)
            if (k != i)
                ASSERT_EQ(cn_dist_set_peer_port(tn[i].node, tn[k].name,
                                                cn_dist_listen_port(tn[k].node)), 0);
        cn_cluster_opts_t co = { .nodes = list, .zone = tn[i].zone, .poll_ms = 200,
                                 .backoff_min_ms = 50, .backoff_max_ms = 200,
                                 .on_node = on_node, .on_node_ud = &tn[i], .log = quiet };
        ASSERT_EQ(cn_cluster_start(tn[i].node, &co), 0);
        ASSERT_EQ(cn_cluster_start(tn[i].node, &co), -EALREADY);
        cn_spawn_opts_t so = { .flags = CN_SPAWN_OWN_STACK };
        ASSERT_EQ(cn_spawn(tn[i].node, node_proc, &tn[i], &so, NULL), 0);
    }
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, run_node, &tn[i]);
    ASSERT(WAIT_UNTIL(atomic_load(&phase) >= 1, 45000, usleep(10000)));
    ASSERT_EQ(atomic_load(&phase), 1);
    atomic_store(&tn[1].stop, 1);
    pthread_join(th[1], NULL);
    pthread_join(th[0], NULL);
    pthread_join(th[2], NULL);
    ASSERT_EQ(tn[0].result, 1);
    ASSERT_EQ(tn[2].result, 1);
}
TEST_TIMEOUT(three_nodes_mesh_registry_zone_calls, 60);

TEST(start_needs_distribution_and_a_known_strategy)
{
    cn_node_t *n;
    cn_node_opts_t o = { .name = "solo@127.0.0.1" };
    ASSERT_EQ(cn_node_new(&o, &n), 0);
    ASSERT_EQ(cn_cluster_start(n, NULL), -ENOTCONN);
    cn_dist_opts_t d = { .cookie = "x", .epmd_less = true, .log = quiet };
    ASSERT_EQ(cn_dist_start(n, &d), 0);
    cn_cluster_opts_t co = { .strategy = "carrier-pigeon", .log = quiet };
    ASSERT_EQ(cn_cluster_start(n, &co), -ENOENT);
    cn_cluster_opts_t bad = { .nodes = "a@h,,broken", .log = quiet };
    ASSERT_EQ(cn_cluster_start(n, &bad), -EINVAL);
    cn_node_free(n);
}

TEST(epmd_names_parse)
{
    static const char reply[] = "name cms at port 4370\nname client_1 at port 39211\n"
                                "garbage line\nname partial at po";
    cl_names_t l = { 0 };
    ASSERT_EQ(cn__epmd_parse_names(reply, sizeof(reply) - 1, "10.77.0.2", &l), 0);
    ASSERT_EQ(l.n, 2);
    ASSERT_STR_EQ(l.v[0], "cms@10.77.0.2");
    ASSERT_STR_EQ(l.v[1], "client_1@10.77.0.2");
    cn__names_free(&l);
}

TEST(gossip_packet_hmac)
{
    uint8_t buf[400], nonce[16] = { 1, 2, 3 };
    cn__gossip_hb_t hb;
    int n = cn__gossip_build(buf, sizeof(buf), "k1", 2, 1700000000123ull, nonce, 4370,
                             "app@10.77.0.2");
    ASSERT_EQ(n, 31 + 13 + 32);
    ASSERT_EQ(cn__gossip_parse(buf, (size_t)n, "k1", 2, &hb), 0);
    ASSERT_STR_EQ(hb.name, "app@10.77.0.2");
    ASSERT_EQ(hb.port, 4370);
    ASSERT_EQ(hb.ts, 1700000000123ull);
    ASSERT_MEM_EQ(hb.nonce, nonce, 16);
    /* wrong secret, any flipped bit, truncation: rejected */
    ASSERT_EQ(cn__gossip_parse(buf, (size_t)n, "k2", 2, &hb), -EBADMSG);
    for (int i = 4; i < n; i++) {
        buf[i] ^= 0x10;
        int rc = cn__gossip_parse(buf, (size_t)n, "k1", 2, &hb);
        ASSERT(rc == -EBADMSG || rc == -EPROTO);
        buf[i] ^= 0x10;
    }
    for (int k = 0; k < n; k++)
        ASSERT(cn__gossip_parse(buf, (size_t)k, "k1", 2, &hb) < 0);
    buf[0] = 'X';
    ASSERT_EQ(cn__gossip_parse(buf, (size_t)n, "k1", 2, &hb), -EPROTO);
}

TEST(ecs_answers_parse)
{
    const char *page = "{\"taskArns\": [\"arn:1\", 7, \"arn:2\"], \"nextToken\": \"t2\"}";
    json_t *doc = json_loads(page, 0, NULL), *arns = json_array();
    char *next = NULL;
    ASSERT_EQ(cn__ecs_list_page(doc, arns, &next), 0);
    ASSERT_EQ((int)json_array_size(arns), 2);
    ASSERT_STR_EQ(next, "t2");
    free(next);
    json_decref(doc);
    json_decref(arns);

    /* an ENI detail, a container's interface, a stopping task, no address, a
     * duplicate, an IPv6 address */
    const char *tasks =
        "{\"tasks\": ["
        "{\"lastStatus\": \"RUNNING\", \"availabilityZone\": \"z1\", \"attachments\": "
        "[{\"details\": [{\"name\": \"privateIPv4Address\", \"value\": \"10.0.0.1\"}]}]},"
        "{\"containers\": [{\"networkInterfaces\": [{\"privateIpv4Address\": \"10.0.0.2\"}]}]},"
        "{\"lastStatus\": \"STOPPING\", \"attachments\": "
        "[{\"details\": [{\"name\": \"privateIPv4Address\", \"value\": \"10.0.0.3\"}]}]},"
        "{\"lastStatus\": \"RUNNING\"},"
        "{\"containers\": [{\"networkInterfaces\": [{\"privateIpv4Address\": \"10.0.0.1\"}]}]},"
        "{\"containers\": [{\"networkInterfaces\": [{\"privateIpv4Address\": \"fd00::1\"}]}]}"
        "]}";
    doc = json_loads(tasks, 0, NULL);
    ASSERT_NOT_NULL(doc);
    cl_names_t out = { 0 };
    cn__ecs_zone_t z[8] = { { 0 } };
    int nz = 0, skipped = 0;
    ASSERT_EQ(cn__ecs_describe_tasks(doc, "app", &out, z, 8, &nz, &skipped), 0);
    ASSERT_EQ(out.n, 2);
    ASSERT_EQ(nz, 2);
    ASSERT_EQ(skipped, 3);
    ASSERT_STR_EQ(out.v[0], "app@10.0.0.1");
    ASSERT_STR_EQ(z[0].zone, "z1");
    ASSERT_STR_EQ(out.v[1], "app@10.0.0.2");
    ASSERT_STR_EQ(z[1].zone, "");
    for (int i = 0; i < nz; i++) {
        free(z[i].name);
        free(z[i].zone);
    }
    cn__names_free(&out);
    json_decref(doc);
}
