/* registry.c - registered names of local processes (erlang:register/2).
 *
 * An open-addressing hash table (linear probing, tombstones) from name to the
 * process; the process keeps its own name so that dying unregisters it in O(1).
 */
#include "cnode_int.h"

#include <errno.h>
#include <string.h>

typedef struct reg_ent {
    char *name;     /* NULL = empty; TOMB = deleted */
    cn_proc_t *proc;
} reg_ent_t;

struct cn_reg {
    reg_ent_t *tab;
    uint32_t cap;   /* power of two */
    uint32_t used;  /* live + tombstones */
};

static char tomb_mark;
#define TOMB (&tomb_mark)

static uint32_t hash_name(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    while (*s) {
        h ^= (unsigned char)*s++;
        h *= 16777619u;
    }
    return h;
}

int cn__reg_init(cn_node_t *n)
{
    n->reg = cn__calloc(1, sizeof(*n->reg));
    if (n->reg == NULL)
        return -ENOMEM;
    n->reg->cap = 64;
    n->reg->tab = cn__calloc(n->reg->cap, sizeof(reg_ent_t));
    if (n->reg->tab == NULL) {
        cn__free(n->reg);
        n->reg = NULL;
        return -ENOMEM;
    }
    return 0;
}

void cn__reg_free(cn_node_t *n)
{
    if (n->reg == NULL)
        return;
    /* Names are owned by the processes (p->name) and freed with them. */
    cn__free(n->reg->tab);
    cn__free(n->reg);
    n->reg = NULL;
}

static reg_ent_t *find(cn_reg_t *r, const char *name)
{
    uint32_t mask = r->cap - 1;
    for (uint32_t i = hash_name(name) & mask;; i = (i + 1) & mask) {
        reg_ent_t *e = &r->tab[i];
        if (e->name == NULL)
            return NULL;
        if (e->name != TOMB && strcmp(e->name, name) == 0)
            return e;
    }
}

static int grow(cn_reg_t *r)
{
    uint32_t cap = r->cap * 2;
    reg_ent_t *tab = cn__calloc(cap, sizeof(*tab));
    if (tab == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < r->cap; i++) {
        reg_ent_t *e = &r->tab[i];
        if (e->name == NULL || e->name == TOMB)
            continue;
        uint32_t j = hash_name(e->name) & (cap - 1);
        while (tab[j].name)
            j = (j + 1) & (cap - 1);
        tab[j] = *e;
    }
    cn__free(r->tab);
    r->tab = tab;
    r->cap = cap;
    uint32_t live = 0;
    for (uint32_t i = 0; i < cap; i++)
        live += tab[i].name != NULL;
    r->used = live;
    return 0;
}

int cn_register(const char *name, cn_pid_t pid)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || name == NULL)
        return -EINVAL;
    size_t len = strlen(name);
    if (len == 0 || len >= MAXATOMLEN || strcmp(name, "undefined") == 0)
        return -EINVAL;
    cn_proc_t *p = cn__proc_get(n, pid);
    if (p == NULL)
        return -ESRCH;
    cn_reg_t *r = n->reg;
    if (find(r, name))
        return -EEXIST;
    if (p->name)
        return -EBUSY;
    if ((r->used + 1) * 4 > r->cap * 3 && grow(r) < 0)
        return -ENOMEM;
    char *copy = cn__malloc(len + 1);
    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, name, len + 1);
    uint32_t mask = r->cap - 1;
    uint32_t i = hash_name(name) & mask;
    while (r->tab[i].name && r->tab[i].name != TOMB)
        i = (i + 1) & mask;
    if (r->tab[i].name == NULL)
        r->used++;
    r->tab[i].name = copy;
    r->tab[i].proc = p;
    p->name = copy;
    return 0;
}

int cn_unregister(const char *name)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || name == NULL)
        return -EINVAL;
    reg_ent_t *e = find(n->reg, name);
    if (e == NULL)
        return -ENOENT;
    e->proc->name = NULL;
    cn__free(e->name);
    e->name = TOMB;
    e->proc = NULL;
    return 0;
}

int cn_whereis(const char *name, cn_pid_t *out)
{
    cn_node_t *n = cn__cur_node;
    if (n == NULL || name == NULL)
        return -EINVAL;
    reg_ent_t *e = find(n->reg, name);
    if (e == NULL || e->proc->state == CN_P_EXITING)
        return -ENOENT;
    *out = e->proc->pid;
    return 0;
}

void cn__reg_drop_proc(cn_node_t *n, cn_proc_t *p)
{
    if (p->name) {
        char name[MAXATOMLEN];
        strcpy(name, p->name);
        cn__cur_node = n;
        cn_unregister(name);
    }
}
