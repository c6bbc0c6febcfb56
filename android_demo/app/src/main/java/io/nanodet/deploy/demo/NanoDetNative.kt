package io.nanodet.deploy.demo

import android.content.res.AssetManager
import android.graphics.Bitmap

/**
 * The JNI library (src/main/jni): it only marshals into the app's detector (android_demo/core/nanodet_ncnn.h:
 * the shared C++ preprocess -> ncnn -> postprocess that the host test suite runs against ncnn built from source).
 */
object NanoDetNative {
    init {
        System.loadLibrary("nanodetdemo")
    }

    /**
     * Loads the .param/.bin named by the manifest from assets; false when they are missing or ncnn refuses them
     * ([lastError] says why). [precision] is the manifest's: ncnn's fp16/bf16/int8 switches follow it exactly
     * as the toolkit's runtime does; [fastFp16] opts into fp16 arithmetic for the float layers of any export.
     */
    external fun load(
        assets: AssetManager, paramFile: String, binFile: String, inputName: String, outputName: String,
        inputWidth: Int, inputHeight: Int, numClasses: Int, regMax: Int, strides: IntArray, mean: DoubleArray,
        std: DoubleArray, keepRatio: Boolean, iouThreshold: Float, maxDetections: Int, precision: String,
        fastFp16: Boolean, useGpu: Boolean, threads: Int,
    ): Boolean

    /** ARGB_8888 bitmap -> [x1, y1, x2, y2, score, label] * n in bitmap pixels, best first. */
    external fun detect(bitmap: Bitmap, scoreThreshold: Float): FloatArray

    /** Milliseconds the last detect() spent in ncnn alone. */
    external fun lastInferenceMs(): Float

    /** What runs: "fp32", "int8", "fp16", "fp32 + fast fp16", "int8 (GPU)", ... */
    external fun runningPrecision(): String

    /** Why the last load() or detect() failed, "" when it did not. */
    external fun lastError(): String

    /** [fastFp16] is ignored for an export whose manifest forbids it (ModelManifest.fastFp16Forbidden). */
    fun load(assets: AssetManager, manifest: ModelManifest, fastFp16: Boolean, useGpu: Boolean, threads: Int): Boolean =
        load(
            assets, manifest.paramFile, manifest.binFile, manifest.inputName, manifest.outputName,
            manifest.inputWidth, manifest.inputHeight, manifest.classNames.size, manifest.regMax, manifest.strides,
            manifest.mean, manifest.std, manifest.keepRatio, manifest.iouThreshold, manifest.maxDetections,
            manifest.precision, fastFp16 && !manifest.fastFp16Forbidden, useGpu, threads,
        )
}
