package io.nanodet.deploy.demo

import android.content.res.AssetManager
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
    val mean: FloatArray,
    val std: FloatArray,
    val keepRatio: Boolean,
    val strides: IntArray,
    val regMax: Int,
    val classNames: List<String>,
    val scoreThreshold: Float,
    val iouThreshold: Float,
    val maxDetections: Int,
) {
    companion object {
        const val FILE = "nanodet.json"

        fun load(assets: AssetManager): ModelManifest? {
            val text = try {
                assets.open(FILE).bufferedReader().use { it.readText() }
            } catch (e: java.io.IOException) {
                return null
            }
            val json = JSONObject(text)
            require(json.getString("backend") == "ncnn") { "$FILE: a ${json.getString("backend")} export, not ncnn" }
            val files = json.getJSONObject("files")
            fun floats(key: String) = json.getJSONArray(key).let { a -> FloatArray(a.length()) { a.getDouble(it).toFloat() } }
            val strides = json.getJSONArray("strides").let { a -> IntArray(a.length()) { a.getInt(it) } }
            val names = json.getJSONArray("class_names").let { a -> List(a.length()) { a.getString(it) } }
            return ModelManifest(
                model = json.getString("model"),
                precision = json.getString("precision"),
                paramFile = files.getString("model"),
                binFile = files.getString("weights"),
                inputName = json.optString("input_name", "data"),
                outputName = json.optString("output_name", "output"),
                inputWidth = json.getInt("input_width"),
                inputHeight = json.getInt("input_height"),
                mean = floats("mean"),
                std = floats("std"),
                keepRatio = json.getBoolean("keep_ratio"),
                strides = strides,
                regMax = json.getInt("reg_max"),
                classNames = names,
                scoreThreshold = json.optDouble("score_thr", 0.05).toFloat(),
                iouThreshold = json.optDouble("iou_thr", 0.6).toFloat(),
                maxDetections = json.optInt("max_dets", 100),
            )
        }
    }
}
