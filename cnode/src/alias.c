/* alias.c - the node's table of active process aliases.
 *
 * A gen_server call tags its request [alias|Ref] and keeps Ref active while it
 * waits (cn_proc's `alias`/`alias_active`). A reply that a remote node sends to
 * the alias (ALIAS_SEND, OTP 24+) names no pid, only Ref, so the distribution
 * layer finds the owner here. The table is a hash of the processes whose alias is
 * active, keyed by their alias reference: open addressing with linear probing and
 * backward-shift deletion, at most half full. An entry goes when the call returns
 * or the process exits, so the table holds only calls in progress.
 */
#include "cnode_int.h"

#include <errno.h>

static uint32_t ref_hash(const cn_ref_t *r)
{
    uint32_t h = r->n[0] * 2654435761u ^ r->n[1] * 2246822519u ^ r->n[2] * 3266489917u;
    return h ^ (h >> 15);
}

static int grow(cn_node_t *n)
{
    uint32_t cap = n->alias_cap ? n->alias_cap * 2 : 64;
    cn_proc_t **tab = cn__calloc(cap, sizeof(*tab));
    if (tab == NULL)
        return -ENOMEM;
    for (uint32_t i = 0; i < n->alias_cap; i++) {
        cn_proc_t *p = n->alias_tab[i];
        if (p == NULL)
            continue;
        uint32_t j = ref_hash(&p->alias) & (cap - 1);
        while (tab[j])
            j = (j + 1) & (cap - 1);
        tab[j] = p;
    }
    cn__free(n->alias_tab);
    n->alias_tab = tab;
    n->alias_cap = cap;
    return 0;
}

int cn__alias_activate(cn_node_t *n, cn_proc_t *p, const cn_ref_t *ref)
{
    if (p->alias_active)
        cn__alias_deactivate(n, p);
    if ((n->alias_n + 1) * 2 > n->alias_cap && grow(n) < 0)
        return -ENOMEM;
    p->alias = *ref;
    p->alias_active = true;
    uint32_t j = ref_hash(ref) & (n->alias_cap - 1);
    while (n->alias_tab[j])
        j = (j + 1) & (n->alias_cap - 1);
    n->alias_tab[j] = p;
    n->alias_n++;
    return 0;
}

void cn__alias_deactivate(cn_node_t *n, cn_proc_t *p)
{
    if (!p->alias_active)
        return;
    p->alias_active = false;
    uint32_t mask = n->alias_cap - 1;
    uint32_t j = ref_hash(&p->alias) & mask;
    while (n->alias_tab[j] && n->alias_tab[j] != p)
        j = (j + 1) & mask;
    if (n->alias_tab[j] == NULL)
        return; /* cannot happen: an active alias is always in the table */
    n->alias_tab[j] = NULL;
    n->alias_n--;
    /* Backward shift: move later entries of the run into the hole when their
     * home slot is at or before it, so lookups never stop early. */
    for (uint32_t k = (j + 1) & mask; n->alias_tab[k]; k = (k + 1) & mask) {
        uint32_t home = ref_hash(&n->alias_tab[k]->alias) & mask;
        if (((k - home) & mask) >= ((k - j) & mask)) {
            n->alias_tab[j] = n->alias_tab[k];
            n->alias_tab[k] = NULL;
            j = k;
        }
    }
}

cn_proc_t *cn__alias_find(cn_node_t *n, const cn_ref_t *ref)
{
    if (n->alias_n == 0)
        return NULL;
    uint32_t mask = n->alias_cap - 1;
    for (uint32_t j = ref_hash(ref) & mask; n->alias_tab[j]; j = (j + 1) & mask)
        if (cn_ref_eq(&n->alias_tab[j]->alias, ref))
            return n->alias_tab[j];
    return NULL;
}

void cn__alias_free(cn_node_t *n)
{
    cn__free(n->alias_tab);
    n->alias_tab = NULL;
    n->alias_cap = n->alias_n = 0;
}
