/* other.c - test module "other": a valid module of another name. */
#define COUNTER_NAME "other"
#define COUNTER_VSN "1"
#define COUNTER_LAYOUT 1
#include "counter_common.h"
