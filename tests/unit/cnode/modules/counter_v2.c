/* counter_v2.c - test module "counter" version 2, another state layout. */
#define COUNTER_NAME "counter"
#define COUNTER_VSN "2"
#define COUNTER_LAYOUT 2
#include "counter_common.h"
