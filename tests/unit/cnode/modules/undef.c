/* undef.c - a module that calls a function no host has: dlopen(RTLD_NOW) fails. */
#include "cnode/code.h"

int cn_no_such_function_anywhere(void);

static int u_init(void *arg, void **state)
{
    (void)arg;
    *state = NULL;
    return cn_no_such_function_anywhere();
}

static const cn_gen_server_t cb = { .init = u_init };
static const cn_module_t mod = { CN_MODULE_ABI, sizeof(cn_module_t), "counter", "9", &cb };
CN_MODULE_DEFINE(mod)
