// Host test driver for the detector core (not part of the app).
//
//   nanodet_core_cli postprocess CONFIG RAW.f32 IMAGE_W IMAGE_H   -> one "label score x1 y1 x2 y2" line each
//   nanodet_core_cli preprocess CONFIG IMAGE.bgr IMAGE_W IMAGE_H OUT.f32
// built with ncnn (NANODET_WITH_NCNN), the app detector's precision switches (nanodet_ncnn.h):
//   nanodet_core_cli options PRECISION FAST_FP16   -> "name 0|1" lines
// (the whole chain runs through the app's own Kotlin and JNI code on a JVM: tests/test_android_native.py)
//
// CONFIG is "key value..." lines written from an export's nanodet.json (tests/test_android_core.py): the
// same values the app reads from the manifest.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "nanodet_core.h"
#if NANODET_WITH_NCNN
#include "nanodet_ncnn.h"
#endif

static nanodet::ModelConfig read_config(const char* path) {
    nanodet::ModelConfig config;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
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

static std::vector<char> read_file(const char* path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<char>(std::istreambuf_iterator<char>(in), {});
}

#if NANODET_WITH_NCNN
static int options(const char* precision, bool fast_fp16) {
    nanodet::PrecisionOptions o;
    if (!nanodet::precision_options(precision, fast_fp16, &o)) {
        std::cerr << "unknown precision " << precision << "\n";
        return 2;
    }
    std::printf("use_fp16_storage %d\nuse_fp16_packed %d\nuse_fp16_arithmetic %d\nuse_bf16_storage %d\n"
                "use_int8_inference %d\n", o.use_fp16_storage, o.use_fp16_packed, o.use_fp16_arithmetic,
                o.use_bf16_storage, o.use_int8_inference);
    return 0;
}

#endif

int main(int argc, char** argv) {
#if NANODET_WITH_NCNN
    if (argc == 4 && std::string(argv[1]) == "options") return options(argv[2], std::atoi(argv[3]) != 0);
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
        for (const auto& d : nanodet::postprocess(reinterpret_cast<const float*>(data.data()), matrix, width,
                                                  height, config))
            std::printf("%d %.9g %.9g %.9g %.9g %.9g\n", d.label, d.score, d.x1, d.y1, d.x2, d.y2);
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
