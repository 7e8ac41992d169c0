// The operators of the model for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
#ifndef MCUZOO_OP_RESOLVER_H_
#define MCUZOO_OP_RESOLVER_H_

#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"

constexpr int kNumOps = 9;
using ModelOpResolver = tflite::MicroMutableOpResolver<kNumOps>;

// Registers exactly the operators the model uses.
inline TfLiteStatus RegisterOps(ModelOpResolver& resolver) {
  if (resolver.AddAdd() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddConcatenation() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddConv2D() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddDequantize() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddMaxPool2D() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddMean() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddMul() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddQuantize() != kTfLiteOk) return kTfLiteError;
  if (resolver.AddSoftmax() != kTfLiteOk) return kTfLiteError;
  return kTfLiteOk;
}

#endif  // MCUZOO_OP_RESOLVER_H_
