// Drives the app's unmodified Kotlin (ModelManifest.kt, NanoDetNative.kt) and JNI library on a desktop JVM, as
// MainActivity does: the manifest from the assets, NanoDetNative.load with its precision, one detect() per
// bitmap. tests/test_android_native.py compiles this against the stand-ins in stubs/.
//
//   java ... HarnessKt ASSETS_DIR LIST SCORE_THRESHOLD FAST_FP16
//     LIST: one "IMAGE.rgba WIDTH HEIGHT" line per image; prints "IMAGE_INDEX label score x1 y1 x2 y2" lines,
//     "precision ..." on stderr; a bad manifest or model prints "error: ..." on stderr and exits 3.
import android.content.res.AssetManager
import android.graphics.Bitmap
import io.nanodet.deploy.demo.ModelManifest
import io.nanodet.deploy.demo.NanoDetNative
import java.io.File
import kotlin.system.exitProcess

fun main(args: Array<String>) {
    val assets = AssetManager(args[0])
    val manifest = try {
        ModelManifest.load(assets)
    } catch (e: ModelManifest.Invalid) {
        System.err.println("error: ${e.message}")
        exitProcess(3)
    }
    if (!NanoDetNative.load(assets, manifest, fastFp16 = args[3] == "1", useGpu = false, threads = 2)) {
        System.err.println("error: ${NanoDetNative.lastError()}")
        exitProcess(3)
    }
    System.err.println("precision ${NanoDetNative.runningPrecision()}")
    val out = StringBuilder()
    File(args[1]).readLines().filter { it.isNotBlank() }.forEachIndexed { index, line ->
        val (path, width, height) = line.split(" ")
        val bitmap = Bitmap(width.toInt(), height.toInt(), File(path).readBytes())
        val d = NanoDetNative.detect(bitmap, args[2].toFloat())
        for (k in 0 until d.size / 6) {
            val row = d.sliceArray(k * 6 until k * 6 + 6)
            out.append("$index ${row[5].toInt()} ${row[4]} ${row[0]} ${row[1]} ${row[2]} ${row[3]}\n")
        }
    }
    print(out)
}
