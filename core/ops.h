// Every core op in one include, for layers above core/.
#pragma once

#include "core/autograd.h"
#include "core/ops/conv.h"
#include "core/ops/dropout.h"
#include "core/ops/elementwise.h"
#include "core/ops/linalg.h"
#include "core/ops/loss.h"
#include "core/ops/norm.h"
#include "core/ops/pool.h"
#include "core/ops/reduce.h"
#include "core/ops/rnn.h"
#include "core/ops/shape.h"
#include "core/random.h"
#include "core/tensor.h"
#include "core/threading.h"
