#include "nanodet_ncnn.h"

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "datareader.h"
#include "net.h"
#if NCNN_VULKAN
#include "gpu.h"
#endif

namespace nanodet {

bool has_int8_depthwise(const std::string& param) {
    std::istringstream lines(param);
    std::string line;
    while (std::getline(lines, line)) {
        std::istringstream tokens(line);
        std::string type, token;
        if (!(tokens >> type) || type != "ConvolutionDepthWise") continue;
        while (tokens >> token) {
            if (token.compare(0, 2, "8=") == 0 && std::atoi(token.c_str() + 2) != 0) return true;
        }
    }
    return false;
}

bool precision_options(const std::string& precision, bool fast_fp16, bool int8_depthwise, PrecisionOptions* options) {
    PrecisionOptions o;
    if (precision == "fp16") {
        // fp16 weights and activations, fp32 arithmetic: what the gate verified on x86 (which has no fp16
        // arithmetic). ARMv8.2's fp16 arithmetic is fast_fp16's (measured: mAP 0.3400 -> 0.3367)
        o.use_fp16_storage = o.use_fp16_packed = true;
    } else if (precision == "int8") {
        o.use_int8_inference = true;
#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64) || defined(_M_IX86)
        // x86's pack-8 depthwise INT8 kernel divides by an approximate reciprocal (rcpps, vendor-specific); the
        // unpacked kernels divide exactly, as ARM's packed ones do: the phone's detections on 76/79 val-dev images
        // instead of 0/79 (runtimes/ncnn.py has the measurement). Only for a model with INT8 depthwise
        // convolutions: ours keep them float and run packed (unpacked is up to 35x slower)
        if (int8_depthwise) o.use_packing_layout = false;
#endif
    } else if (precision != "fp32") {
        return false;
    }
    if (fast_fp16) o.use_fp16_storage = o.use_fp16_packed = o.use_fp16_arithmetic = true;
    *options = o;
    return true;
}

struct NcnnDetector::Impl {
    ncnn::Net net;
    ModelConfig config;
    DetectorOptions options;
    std::string param;
    std::vector<unsigned char> weights;
    bool gpu = false;
};

NcnnDetector::NcnnDetector() = default;
NcnnDetector::~NcnnDetector() = default;

bool NcnnDetector::load(const ModelConfig& config, const DetectorOptions& options, std::string param,
                        std::vector<unsigned char> weights, std::string* error) {
    PrecisionOptions precision;
    if (!precision_options(options.precision, options.fast_fp16, has_int8_depthwise(param), &precision)) {
        *error = "unknown precision '" + options.precision + "' (fp32, fp16 or int8)";
        return false;
    }
    if (config.input_width <= 0 || config.input_height <= 0 || config.num_classes <= 0 || config.reg_max < 0 ||
        config.strides.empty()) {
        *error = "the manifest's model configuration is incomplete";
        return false;
    }
    auto impl = std::make_unique<Impl>();
    impl->config = config;
    impl->options = options;
    impl->param = std::move(param);
    impl->weights = std::move(weights);
    ncnn::Option& opt = impl->net.opt;
    opt.num_threads = options.threads > 0 ? options.threads : 1;
    opt.use_fp16_storage = precision.use_fp16_storage;
    opt.use_fp16_packed = precision.use_fp16_packed;
    opt.use_fp16_arithmetic = precision.use_fp16_arithmetic;
    opt.use_bf16_storage = precision.use_bf16_storage;
    opt.use_int8_inference = precision.use_int8_inference;
    opt.use_packing_layout = precision.use_packing_layout;
#if NCNN_VULKAN
    impl->gpu = options.use_gpu && ncnn::get_gpu_count() > 0;
#endif
    opt.use_vulkan_compute = impl->gpu;
    // bounded readers: a model file is untrusted input, ncnn must not read past its end. The weights are
    // referenced in place (4-byte aligned: std::vector's storage is), so they live in impl.
    const unsigned char* text = reinterpret_cast<const unsigned char*>(impl->param.c_str());
    ncnn::DataReaderFromMemory param_reader(text, impl->param.size());
    if (impl->net.load_param(param_reader) != 0) {
        *error = "ncnn could not read the .param";
        return false;
    }
    const unsigned char* cursor = impl->weights.data();
    ncnn::DataReaderFromMemory weight_reader(cursor, impl->weights.size());
    if (impl->net.load_model(weight_reader) != 0 || cursor != impl->weights.data() + impl->weights.size()) {
        *error = "ncnn could not read the .bin (" + std::to_string(impl->weights.size()) +
                 " bytes: not the size this .param needs)";
        return false;
    }
    impl_ = std::move(impl);
    return true;
}

std::vector<Detection> NcnnDetector::detect(const uint8_t* bgr, int width, int height, int stride,
                                            float score_threshold, std::string* error, std::vector<float>* raw) {
    if (!impl_) {
        *error = "no model loaded";
        return {};
    }
    ModelConfig config = impl_->config;
    config.score_threshold = score_threshold;
    Matrix3 matrix;
    const std::vector<float> tensor = preprocess(bgr, width, height, stride, config, &matrix);
    // planar [3, H, W] into ncnn's channel-aligned Mat
    ncnn::Mat input(config.input_width, config.input_height, 3);
    const size_t plane = size_t(config.input_width) * config.input_height;
    for (int c = 0; c < 3; ++c) std::memcpy(input.channel(c), tensor.data() + c * plane, plane * sizeof(float));

    const auto start = std::chrono::steady_clock::now();
    ncnn::Mat output;
    int status;
    {
        ncnn::Extractor extractor = impl_->net.create_extractor();
        status = extractor.input(impl_->options.input_name.c_str(), input);
        if (status == 0) status = extractor.extract(impl_->options.output_name.c_str(), output);
    }
    last_inference_ms_ = std::chrono::duration<float, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (status != 0) {
        *error = "ncnn failed on blob '" + impl_->options.input_name + "' -> '" + impl_->options.output_name + "'";
        return {};
    }
    if (output.dims != 2 || output.h != config.num_points() || output.w != config.channels()) {
        *error = "the output is " + std::to_string(output.h) + " x " + std::to_string(output.w) +
                 ", the manifest says " + std::to_string(config.num_points()) + " x " +
                 std::to_string(config.channels());
        return {};
    }
    const float* values = static_cast<const float*>(output.data);
    if (raw) raw->assign(values, values + size_t(output.w) * output.h);
    size_t non_finite = 0;
    std::vector<Detection> detections = postprocess(values, matrix, width, height, config, &non_finite);
    if (non_finite)
        *error = "the model produced NaN/Inf (" + std::to_string(non_finite) + " of " +
                 std::to_string(size_t(output.w) * output.h) + " output values)";
    return detections;
}

std::string NcnnDetector::running_precision() const {
    if (!impl_) return "no model";
    std::string text = impl_->options.precision;
    if (impl_->gpu) return text + " (GPU)";
    if (impl_->options.fast_fp16) text += " + fast fp16";
    return text;
}

}  // namespace nanodet
