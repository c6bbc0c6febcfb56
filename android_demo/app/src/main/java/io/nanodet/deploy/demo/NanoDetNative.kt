package io.nanodet.deploy.demo

import android.content.res.AssetManager
import android.graphics.Bitmap

/** The JNI library (src/main/jni): ncnn inference around the shared C++ detector core (android_demo/core). */
object NanoDetNative {
    init {
        System.loadLibrary("nanodetdemo")
    }

    /** Loads the .param/.bin named by the manifest from assets; false when ncnn refuses them. */
    external fun load(
        assets: AssetManager, paramFile: String, binFile: String, inputName: String, outputName: String,
        inputWidth: Int, inputHeight: Int, numClasses: Int, regMax: Int, strides: IntArray, mean: FloatArray,
        std: FloatArray, keepRatio: Boolean, iouThreshold: Float, maxDetections: Int, int8: Boolean,
        useGpu: Boolean, threads: Int,
    ): Boolean

    /** ARGB_8888 bitmap -> [x1, y1, x2, y2, score, label] * n in bitmap pixels, best first. */
    external fun detect(bitmap: Bitmap, scoreThreshold: Float): FloatArray

    /** Milliseconds the last detect() spent in ncnn alone. */
    external fun lastInferenceMs(): Float

    fun load(assets: AssetManager, manifest: ModelManifest, useGpu: Boolean, threads: Int): Boolean = load(
        assets, manifest.paramFile, manifest.binFile, manifest.inputName, manifest.outputName,
        manifest.inputWidth, manifest.inputHeight, manifest.classNames.size, manifest.regMax, manifest.strides,
        manifest.mean, manifest.std, manifest.keepRatio, manifest.iouThreshold, manifest.maxDetections,
        manifest.precision == "int8", useGpu, threads,
    )
}
