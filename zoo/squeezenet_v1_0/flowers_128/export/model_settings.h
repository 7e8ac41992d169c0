// Model settings for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
#ifndef MCUZOO_MODEL_SETTINGS_H_
#define MCUZOO_MODEL_SETTINGS_H_

#include <cstdint>

// Input: uint8 1x128x128x3; real value = kInputScale * (q - kInputZeroPoint)
// Preprocessing: resize to the input size (bilinear, aspect fit), then feed the raw pixels (0..255): the input's quantization turns them into pixel * 0.00784314 + -1
using InputType = uint8_t;
constexpr const char* kInputDtype = "uint8";
constexpr int kInputRank = 4;
constexpr int kInputDims[] = {1, 128, 128, 3};
constexpr int kInputHeight = 128;
constexpr int kInputWidth = 128;
constexpr int kInputChannels = 3;
constexpr int kInputSize = 49152;  // elements
constexpr float kInputScale = 0.007843137718737125f;
constexpr int kInputZeroPoint = 127;

// Output: float32 1x5
using OutputType = float;
constexpr const char* kOutputDtype = "float32";
constexpr int kOutputSize = 5;  // elements
constexpr float kOutputScale = 0.0f;
constexpr int kOutputZeroPoint = 0;

constexpr int kNumClasses = 5;
constexpr const char* kClassNames[kNumClasses] = {
    "daisy",
    "dandelion",
    "rose",
    "sunflower",
    "tulip"
};

// The arena TFLM needs for this model: tflm_arena_bytes 491472,
// rounded up to 16: TFLM's reference kernels on a 64-bit build, an upper bound on a 32-bit
// Cortex-M; CMSIS-NN kernels may add scratch buffers (check interpreter.arena_used_bytes()).
constexpr int kTensorArenaSize = 491472;

#endif  // MCUZOO_MODEL_SETTINGS_H_
