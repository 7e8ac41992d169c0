// Model settings for TensorFlow Lite Micro, written by mcuzoo export. Do not edit.
#ifndef MCUZOO_MODEL_SETTINGS_H_
#define MCUZOO_MODEL_SETTINGS_H_

#include <cstdint>

// Input: uint8 1x28x28x1; real value = kInputScale * (q - kInputZeroPoint)
// Preprocessing: resize to the input size (bilinear, aspect emnist), then feed the raw pixels (0..255): the input's quantization turns them into pixel * 0.00784314 + -1
using InputType = uint8_t;
constexpr const char* kInputDtype = "uint8";
constexpr int kInputRank = 4;
constexpr int kInputDims[] = {1, 28, 28, 1};
constexpr int kInputHeight = 28;
constexpr int kInputWidth = 28;
constexpr int kInputChannels = 1;
constexpr int kInputSize = 784;  // elements
constexpr float kInputScale = 0.007843137718737125f;
constexpr int kInputZeroPoint = 127;

// Output: float32 1x36
using OutputType = float;
constexpr const char* kOutputDtype = "float32";
constexpr int kOutputSize = 36;  // elements
constexpr float kOutputScale = 0.0f;
constexpr int kOutputZeroPoint = 0;

constexpr int kNumClasses = 36;
constexpr const char* kClassNames[kNumClasses] = {
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "A",
    "B",
    "C",
    "D",
    "E",
    "F",
    "G",
    "H",
    "I",
    "J",
    "K",
    "L",
    "M",
    "N",
    "O",
    "P",
    "Q",
    "R",
    "S",
    "T",
    "U",
    "V",
    "W",
    "X",
    "Y",
    "Z"
};

// The arena TFLM needs for this model: tflm_arena_bytes 13744,
// rounded up to 16: TFLM's reference kernels on a 64-bit build, an upper bound on a 32-bit
// Cortex-M; CMSIS-NN kernels may add scratch buffers (check interpreter.arena_used_bytes()).
constexpr int kTensorArenaSize = 13744;

#endif  // MCUZOO_MODEL_SETTINGS_H_
