/* nosym.c - a shared object that is not a module (no cn_module_info). */
__attribute__((visibility("default"))) int nosym_answer(void);
int nosym_answer(void)
{
    return 42;
}
