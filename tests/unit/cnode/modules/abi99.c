/* abi99.c - test module built for another module ABI. */
#include "cnode/code.h"

static const cn_gen_server_t cb = { 0 };
static const cn_module_t mod = { 99, sizeof(cn_module_t), "counter", "99", &cb };
CN_MODULE_DEFINE(mod)
