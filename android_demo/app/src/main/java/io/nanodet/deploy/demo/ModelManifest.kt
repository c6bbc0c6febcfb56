package io.nanodet.deploy.demo

import android.content.res.AssetManager
import org.json.JSONException
import org.json.JSONObject

/**
 * Everything the app knows about the model, read from the export's nanodet.json in assets/ (written by
 * `nanodet-deploy export --to ncnn ... --android android_demo`). Nothing model-specific is hard-coded: a custom
 * model (other classes, a non-square input) runs without a code change.
 */
data class ModelManifest(
    val model: String,
    val precision: String,
    val paramFile: String,
    val binFile: String,
    val inputName: String,
    val outputName: String,
    val inputWidth: Int,
    val inputHeight: Int,
    val mean: DoubleArray,
    val std: DoubleArray,
    val keepRatio: Boolean,
    val strides: IntArray,
    val regMax: Int,
    val classNames: List<String>,
    val scoreThreshold: Float,
    val iouThreshold: Float,
    val maxDetections: Int,
    /**
     * The "Fast fp16" switch for this export: "allowed" (not measured), "verified", or "forbidden" — fp16
     * arithmetic was over the parity gate's budgets on the emulated phone (`nanodet-deploy export --arch arm64`),
     * so the app keeps it off and shows [fastFp16Note] next to the switch.
     */
    val fastFp16: String = "allowed",
    val fastFp16Note: String = "",
) {
    val fastFp16Forbidden: Boolean get() = fastFp16 == "forbidden"

    /** A manifest that is missing, malformed or not for this app: [message] is shown on screen. */
    class Invalid(message: String) : Exception(message)

    companion object {
        const val FILE = "nanodet.json"
        /** the precisions an ncnn export of nanodet-deploy has (the app sets ncnn's switches from it) */
        val PRECISIONS = setOf("fp32", "fp16", "int8")
        /** the manifest's verdicts on the Fast fp16 switch (nanodet_deploy/manifest.py FAST_FP16) */
        val FAST_FP16 = setOf("allowed", "verified", "forbidden")

        /** The manifest in assets, or [Invalid] saying what is wrong with it. */
        fun load(assets: AssetManager): ModelManifest {
            val text = try {
                assets.open(FILE).bufferedReader().use { it.readText() }
            } catch (e: java.io.IOException) {
                throw Invalid("no $FILE in the app's assets: put an export in with `nanodet-deploy android EXPORT --app android_demo`")
            }
            return try {
                parse(text)
            } catch (e: JSONException) {
                throw Invalid("$FILE: ${e.message}")
            }
        }

        fun parse(text: String): ModelManifest {
            val json = JSONObject(text)
            val backend = json.getString("backend")
            if (backend != "ncnn") throw Invalid("$FILE: a $backend export, not ncnn")
            val precision = json.getString("precision")
            if (precision !in PRECISIONS) throw Invalid("$FILE: precision '$precision' is not one of $PRECISIONS")
            val files = json.getJSONObject("files")
            fun doubles(key: String) = json.getJSONArray(key).let { a -> DoubleArray(a.length()) { a.getDouble(it) } }
            val strides = json.getJSONArray("strides").let { a -> IntArray(a.length()) { a.getInt(it) } }
            val names = json.getJSONArray("class_names").let { a -> List(a.length()) { a.getString(it) } }
            val manifest = ModelManifest(
                model = json.getString("model"),
                precision = precision,
                paramFile = files.getString("model"),
                binFile = files.getString("weights"),
                inputName = json.optString("input_name", "data"),
                outputName = json.optString("output_name", "output"),
                inputWidth = json.getInt("input_width"),
                inputHeight = json.getInt("input_height"),
                mean = doubles("mean"),
                std = doubles("std"),
                keepRatio = json.getBoolean("keep_ratio"),
                strides = strides,
                regMax = json.getInt("reg_max"),
                classNames = names,
                scoreThreshold = json.optDouble("score_thr", 0.05).toFloat(),
                iouThreshold = json.optDouble("iou_thr", 0.6).toFloat(),
                maxDetections = json.optInt("max_dets", 100),
                fastFp16 = json.optString("fast_fp16", "allowed"),
                fastFp16Note = json.optString("fast_fp16_note", ""),
            )
            val problem = when {
                manifest.inputWidth <= 0 || manifest.inputHeight <= 0 -> "input size must be positive"
                manifest.mean.size != 3 || manifest.std.size != 3 -> "mean and std need 3 values (B, G, R)"
                manifest.std.any { it <= 0.0 } -> "std values must be positive"
                manifest.strides.isEmpty() || manifest.strides.any { it <= 0 } -> "strides must be positive"
                manifest.classNames.isEmpty() -> "class_names is empty"
                manifest.regMax < 0 -> "reg_max must be >= 0"
                manifest.maxDetections <= 0 -> "max_dets must be positive"
                manifest.fastFp16 !in FAST_FP16 -> "fast_fp16 '${manifest.fastFp16}' is not one of $FAST_FP16"
                else -> null
            }
            if (problem != null) throw Invalid("$FILE: $problem")
            return manifest
        }
    }
}
