// Command-line driver of the detector core (not part of the app): the host tests run it, and the emulated-phone
// verification (nanodet_deploy/phone.py: `nanodet-deploy verify --arch arm64`) runs it cross-compiled for aarch64
// under qemu, so ncnn's ARM kernels run behind the app's own preprocess and postprocess.
//
//   nanodet_core_cli postprocess CONFIG RAW.f32 IMAGE_W IMAGE_H   -> one "label score x1 y1 x2 y2" line each
//   nanodet_core_cli preprocess CONFIG IMAGE.bgr IMAGE_W IMAGE_H OUT.f32
// built with ncnn (NANODET_WITH_NCNN), the app's detector (nanodet_ncnn.h):
//   nanodet_core_cli options PRECISION FAST_FP16 PARAM -> its precision switches for that model, "name 0|1" lines
//   nanodet_core_cli detect PARAM BIN PRECISION FAST_FP16 THREADS RAW < CONFIG, "end", binary PPM images
//       -> per image one JSON line {"image": i, "width", "height", "detections": [{"label", "score", "box"}]}
//          (the toolkit's JSON contract without class names), then with RAW=1 the network's float32 output
//          [num_points, channels] as raw bytes (host byte order). A bad image or model: one line on stderr, exit 1.
// (the whole chain runs through the app's own Kotlin and JNI code on a JVM: tests/test_android_native.py)
//
// CONFIG is "key value..." lines written from an export's nanodet.json (nanodet_deploy.phone.config_text): the
// same values the app reads from the manifest.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "nanodet_core.h"
#if NANODET_WITH_NCNN
#include "nanodet_ncnn.h"
#endif

static nanodet::ModelConfig read_config(std::istream& in) {
    nanodet::ModelConfig config;
    std::string line;
    while (std::getline(in, line) && line != "end") {
        std::istringstream fields(line);
        std::string key;
        fields >> key;
        if (key == "input_size") fields >> config.input_width >> config.input_height;
        else if (key == "num_classes") fields >> config.num_classes;
        else if (key == "reg_max") fields >> config.reg_max;
        else if (key == "mean") fields >> config.mean[0] >> config.mean[1] >> config.mean[2];
        else if (key == "std") fields >> config.std[0] >> config.std[1] >> config.std[2];
        else if (key == "keep_ratio") fields >> config.keep_ratio;
        else if (key == "score_thr") fields >> config.score_threshold;
        else if (key == "iou_thr") fields >> config.iou_threshold;
        else if (key == "max_dets") fields >> config.max_detections;
        else if (key == "strides") {
            config.strides.clear();
            for (int s; fields >> s;) config.strides.push_back(s);
        }
    }
    return config;
}

static nanodet::ModelConfig read_config(const char* path) {
    std::ifstream in(path);
    return read_config(in);
}

static std::vector<char> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

#if NANODET_WITH_NCNN
static int options(const char* precision, bool fast_fp16, const char* param_path) {
    nanodet::PrecisionOptions o;
    const std::vector<char> param = read_file(param_path);
    const bool int8_depthwise = nanodet::has_int8_depthwise(std::string(param.begin(), param.end()));
    if (!nanodet::precision_options(precision, fast_fp16, int8_depthwise, &o)) {
        std::cerr << "unknown precision " << precision << "\n";
        return 2;
    }
    std::printf("use_fp16_storage %d\nuse_fp16_packed %d\nuse_fp16_arithmetic %d\nuse_bf16_storage %d\n"
                "use_int8_inference %d\nuse_packing_layout %d\n", o.use_fp16_storage, o.use_fp16_packed,
                o.use_fp16_arithmetic, o.use_bf16_storage, o.use_int8_inference, o.use_packing_layout);
    return 0;
}

// One binary PPM (P6, maxval 255) from the stream into interleaved BGR8, as the app's bitmaps become; false at
// the end of the stream or on a malformed image (*error says which).
static bool read_ppm(std::istream& in, std::vector<uint8_t>* bgr, int* width, int* height, std::string* error) {
    std::string magic;
    if (!(in >> magic)) return false;
    long w = 0, h = 0, maxval = 0;
    if (magic != "P6" || !(in >> w >> h >> maxval) || maxval != 255 || w <= 0 || h <= 0 || w > 65535 || h > 65535) {
        *error = "not a binary PPM with maxval 255 and a size up to 65535";
        return false;
    }
    in.get();  // the one whitespace byte before the pixels
    bgr->resize(size_t(w) * h * 3);
    if (!in.read(reinterpret_cast<char*>(bgr->data()), std::streamsize(bgr->size()))) {
        *error = "the PPM's pixels end early";
        return false;
    }
    for (size_t i = 0; i < bgr->size(); i += 3) std::swap((*bgr)[i], (*bgr)[i + 2]);  // RGB -> BGR
    *width = int(w), *height = int(h);
    return true;
}

static int detect(char** argv) {
    std::ios::sync_with_stdio(false);
    const nanodet::ModelConfig config = read_config(std::cin);
    nanodet::DetectorOptions options;
    options.precision = argv[4];
    options.fast_fp16 = std::atoi(argv[5]) != 0;
    options.threads = std::atoi(argv[6]);
    const bool raw = std::atoi(argv[7]) != 0;
    const std::vector<char> param = read_file(argv[2]), weights = read_file(argv[3]);
    nanodet::NcnnDetector detector;
    std::string error;
    if (!detector.load(config, options, std::string(param.begin(), param.end()),
                       std::vector<unsigned char>(weights.begin(), weights.end()), &error)) {
        std::cerr << error << "\n";
        return 1;
    }
    std::vector<uint8_t> bgr;
    std::vector<float> output;
    int width = 0, height = 0;
    for (int index = 0; read_ppm(std::cin, &bgr, &width, &height, &error); ++index) {
        const auto found = detector.detect(bgr.data(), width, height, width * 3, config.score_threshold, &error,
                                           raw ? &output : nullptr);
        if (!error.empty()) {
            std::cerr << "image " << index << ": " << error << "\n";
            return 1;
        }
        std::printf("{\"image\": %d, \"width\": %d, \"height\": %d, \"detections\": [", index, width, height);
        for (size_t i = 0; i < found.size(); ++i) {
            const auto& d = found[i];  // %.9g: every float32 exactly
            std::printf("%s{\"label\": %d, \"score\": %.9g, \"box\": [%.9g, %.9g, %.9g, %.9g]}", i ? ", " : "",
                        d.label, d.score, d.x1, d.y1, d.x2, d.y2);
        }
        std::printf("]}\n");
        if (raw) std::fwrite(output.data(), sizeof(float), output.size(), stdout);
        std::fflush(stdout);
    }
    if (!error.empty()) {
        std::cerr << "stdin: " << error << "\n";
        return 1;
    }
    return 0;
}
#endif

int main(int argc, char** argv) {
#if NANODET_WITH_NCNN
    if (argc == 5 && std::string(argv[1]) == "options") return options(argv[2], std::atoi(argv[3]) != 0, argv[4]);
    if (argc == 8 && std::string(argv[1]) == "detect") return detect(argv);
#endif
    if (argc < 6) {
        std::cerr << "usage: nanodet_core_cli postprocess|preprocess CONFIG DATA IMAGE_W IMAGE_H [OUT]\n";
        return 2;
    }
    const std::string mode = argv[1];
    const nanodet::ModelConfig config = read_config(argv[2]);
    const std::vector<char> data = read_file(argv[3]);
    const int width = std::atoi(argv[4]), height = std::atoi(argv[5]);
    if (mode == "postprocess") {
        const size_t expected = size_t(config.num_points()) * config.channels() * sizeof(float);
        if (data.size() != expected) {
            std::cerr << argv[3] << ": " << data.size() << " bytes, expected " << expected << "\n";
            return 1;
        }
        const auto matrix = nanodet::resize_matrix(width, height, config);
        size_t non_finite = 0;
        for (const auto& d : nanodet::postprocess(reinterpret_cast<const float*>(data.data()), matrix, width,
                                                  height, config, &non_finite))
            std::printf("%d %.9g %.9g %.9g %.9g %.9g\n", d.label, d.score, d.x1, d.y1, d.x2, d.y2);
        if (non_finite) {
            std::cerr << argv[3] << ": the model produced NaN/Inf (" << non_finite << " values)\n";
            return 1;
        }
        return 0;
    }
    if (mode == "preprocess" && argc == 7) {
        const auto tensor = nanodet::preprocess(reinterpret_cast<const uint8_t*>(data.data()), width, height,
                                                width * 3, config, nullptr);
        std::ofstream(argv[6], std::ios::binary)
            .write(reinterpret_cast<const char*>(tensor.data()), std::streamsize(tensor.size() * sizeof(float)));
        return 0;
    }
    std::cerr << "unknown mode " << mode << "\n";
    return 2;
}
