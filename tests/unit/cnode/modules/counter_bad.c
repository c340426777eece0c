/* counter_bad.c - test module "counter" version 3 whose code_change fails. */
#define COUNTER_NAME "counter"
#define COUNTER_VSN "3"
#define COUNTER_LAYOUT 2
#define COUNTER_REFUSE
#include "counter_common.h"
