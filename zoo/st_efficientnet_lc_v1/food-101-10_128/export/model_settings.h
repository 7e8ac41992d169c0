// Model settings for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
#ifndef MCUZOO_MODEL_SETTINGS_H_
#define MCUZOO_MODEL_SETTINGS_H_

#include <cstdint>

// Input: uint8 1x128x128x3; real value = kInputScale * (q - kInputZeroPoint)
// Preprocessing: resize to the input size (nearest, aspect fit), then feed the raw pixels (0..255): the input's quantization turns them into pixel * 0.00392157 + 0
using InputType = uint8_t;
constexpr const char* kInputDtype = "uint8";
constexpr int kInputRank = 4;
constexpr int kInputDims[] = {1, 128, 128, 3};
constexpr int kInputHeight = 128;
constexpr int kInputWidth = 128;
constexpr int kInputChannels = 3;
constexpr int kInputSize = 49152;  // elements
constexpr float kInputScale = 0.003921568859368563f;
constexpr int kInputZeroPoint = 0;

// Output: float32 1x10
using OutputType = float;
constexpr const char* kOutputDtype = "float32";
constexpr int kOutputSize = 10;  // elements
constexpr float kOutputScale = 0.0f;
constexpr int kOutputZeroPoint = 0;

constexpr int kNumClasses = 10;
constexpr const char* kClassNames[kNumClasses] = {
    "apple_pie",
    "baby_back_ribs",
    "baklava",
    "beef_carpaccio",
    "beef_tartare",
    "beet_salad",
    "beignets",
    "bibimbap",
    "bread_pudding",
    "breakfast_burrito"
};

// The arena TFLM needs for this model: tflm_arena_bytes 228112,
// rounded up to 16: TFLM's reference kernels on a 64-bit build, an upper bound on a 32-bit
// Cortex-M; CMSIS-NN kernels may add scratch buffers (check interpreter.arena_used_bytes()).
constexpr int kTensorArenaSize = 228112;

#endif  // MCUZOO_MODEL_SETTINGS_H_
