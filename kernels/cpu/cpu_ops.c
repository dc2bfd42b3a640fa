/* placeholder, being written */
#include "kernels/ops.h"
