// The model for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
// Load it with tflite::GetModel(g_model_data).
#ifndef MCUZOO_MODEL_DATA_H_
#define MCUZOO_MODEL_DATA_H_

extern const unsigned char g_model_data[];  // 16-byte aligned
extern const unsigned int g_model_data_size;

#endif  // MCUZOO_MODEL_DATA_H_
