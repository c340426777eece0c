/* counter_v1.c - test module "counter" version 1 (see counter_common.h). */
#define COUNTER_NAME "counter"
#define COUNTER_VSN "1"
#define COUNTER_LAYOUT 1
#include "counter_common.h"
