// Runs two ncnn models (FP32 and INT8 exports) by turns on one input, against an ncnn built with NCNN_BENCHMARK=ON,
// which prints every layer's time to stderr; benchmarks/ncnn_ops.py builds this, runs it and reads that output.
//
//   ncnn_ops INPUT.f32 W H THREADS RUNS  FP32.param FP32.bin PACKING  INT8.param INT8.bin PACKING  INPUT_BLOB OUTPUT...
//
// INPUT.f32: the preprocessed tensor, float32 [3, H, W]. PACKING (0/1): use_packing_layout, as the toolkit's
// runtime sets it (runtimes/ncnn.py: unpacked on x86 for INT8 depthwise). Before each run it prints "=== fp32 K" /
// "=== int8 K".
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "net.h"

static int load(ncnn::Net& net, const char* param, const char* bin, int threads, bool int8, bool packing)
{
    net.opt.num_threads = threads;
    net.opt.openmp_blocktime = 0;
    net.opt.use_fp16_storage = net.opt.use_fp16_packed = net.opt.use_fp16_arithmetic = false;
    net.opt.use_bf16_storage = false;
    net.opt.use_int8_inference = int8;
    net.opt.use_packing_layout = packing;
    return net.load_param(param) != 0 || net.load_model(bin) != 0;
}

int main(int argc, char** argv)
{
    if (argc < 14)
    {
        fprintf(stderr, "usage: %s INPUT.f32 W H THREADS RUNS FP32.param FP32.bin PACKING INT8.param INT8.bin PACKING "
                        "INPUT_BLOB OUTPUT...\n", argv[0]);
        return 2;
    }
    const int w = atoi(argv[2]), h = atoi(argv[3]), threads = atoi(argv[4]), runs = atoi(argv[5]);
    ncnn::Mat input(w, h, 3);
    FILE* f = fopen(argv[1], "rb");
    if (!f) return 2;
    for (int c = 0; c < 3; c++)
    {
        if (fread(input.channel(c), sizeof(float), (size_t)w * h, f) != (size_t)w * h) return 2;
    }
    fclose(f);

    ncnn::Net nets[2];
    const char* names[2] = {"fp32", "int8"};
    for (int i = 0; i < 2; i++)
    {
        if (load(nets[i], argv[6 + 3 * i], argv[7 + 3 * i], threads, i == 1, atoi(argv[8 + 3 * i]) != 0))
        {
            fprintf(stderr, "cannot load %s\n", argv[6 + 3 * i]);
            return 1;
        }
    }
    std::vector<std::string> outputs(argv + 13, argv + argc);
    for (int run = -3; run < runs; run++)  // three warm-up runs each, numbered -3..-1
    {
        for (int i = 0; i < 2; i++)
        {
            fprintf(stderr, "=== %s %d\n", names[i], run);
            ncnn::Extractor ex = nets[i].create_extractor();
            ex.input(argv[12], input);
            for (const std::string& name : outputs)
            {
                ncnn::Mat out;
                if (ex.extract(name.c_str(), out) != 0) return 1;
            }
        }
    }
    return 0;
}
