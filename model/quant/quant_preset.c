/* quant_preset.c - SCAFFOLD (replaced by the presets work). */
#include "quant_internal.h"
