package io.nanodet.deploy.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.BitmapFactory
import android.graphics.ImageDecoder
import android.graphics.Matrix
import android.net.Uri
import android.os.Build
import android.os.Bundle
import android.provider.MediaStore
import android.view.View
import android.widget.SeekBar
import android.widget.Toast
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.core.content.ContextCompat
import io.nanodet.deploy.demo.databinding.ActivityMainBinding
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

class MainActivity : AppCompatActivity() {
    private lateinit var binding: ActivityMainBinding
    private lateinit var analysisExecutor: ExecutorService
    private var manifest: ModelManifest? = null
    @Volatile private var modelLoaded = false
    @Volatile private var useGpu = false
    @Volatile private var fastFp16 = false
    @Volatile private var scoreThreshold = 0.35f
    @Volatile private var stillMode = false
    private var lastFrameNanos = 0L
    private var fps = 0f

    private val requestCamera = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else Toast.makeText(this, R.string.no_camera, Toast.LENGTH_LONG).show()
    }
    private val pickPhoto = registerForActivityResult(ActivityResultContracts.GetContent()) { uri ->
        uri?.let { detectStill(it) }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        binding = ActivityMainBinding.inflate(layoutInflater)
        setContentView(binding.root)
        analysisExecutor = Executors.newSingleThreadExecutor()

        val model = try {
            ModelManifest.load(assets)
        } catch (e: ModelManifest.Invalid) {
            showMessage(e.message ?: getString(R.string.no_model))
            return
        }
        manifest = model
        scoreThreshold = maxOf(model.scoreThreshold, scoreThreshold)
        analysisExecutor.execute { loadModel() }

        binding.threshold.progress = (scoreThreshold * 100).toInt()
        binding.thresholdLabel.text = getString(R.string.threshold, scoreThreshold)
        binding.threshold.setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
            override fun onProgressChanged(bar: SeekBar, progress: Int, fromUser: Boolean) {
                scoreThreshold = maxOf(progress / 100f, model.scoreThreshold)
                binding.thresholdLabel.text = getString(R.string.threshold, scoreThreshold)
            }
            override fun onStartTrackingTouch(bar: SeekBar) {}
            override fun onStopTrackingTouch(bar: SeekBar) {}
        })
        binding.gpu.setOnCheckedChangeListener { _, checked ->
            useGpu = checked
            analysisExecutor.execute { loadModel() }
        }
        // fp16 arithmetic is not what the parity gate verified: measured on the emulated phone it costs 0.3 mAP
        // points (README "Phone"); an export made with --arch arm64 says whether it kept the budgets
        binding.fastFp16.isChecked = false
        when (model.fastFp16) {
            "forbidden" -> {
                binding.fastFp16.isEnabled = false
                binding.fastFp16.text = getString(R.string.fast_fp16_forbidden, model.fastFp16Note)
            }
            "verified" -> binding.fastFp16.text = getString(R.string.fast_fp16_verified)
            else -> binding.fastFp16.text = getString(R.string.fast_fp16_unverified)
        }
        binding.fastFp16.setOnCheckedChangeListener { _, checked ->
            fastFp16 = checked
            analysisExecutor.execute { loadModel() }
        }
        binding.photo.setOnClickListener { pickPhoto.launch("image/*") }
        binding.camera.setOnClickListener { showCamera() }

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            requestCamera.launch(Manifest.permission.CAMERA)
        }
    }

    /** A message on screen instead of a crash: no or bad manifest, model files missing, no camera. */
    private fun showMessage(text: String) = runOnUiThread {
        binding.message.text = text
        binding.message.visibility = View.VISIBLE
    }

    // on the analysis thread: detect() runs there too, so a reload never races a frame
    private fun loadModel() {
        val model = manifest ?: return
        val threads = minOf(4, Runtime.getRuntime().availableProcessors())
        modelLoaded = NanoDetNative.load(assets, model, fastFp16, useGpu, threads)
        if (!modelLoaded) showMessage(NanoDetNative.lastError())
        else runOnUiThread { binding.message.visibility = View.GONE }
    }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            // no camera, a camera in use or a CameraX failure: a message, and Photo still works
            try {
                val provider = providerFuture.get()
                val selector = listOf(CameraSelector.DEFAULT_BACK_CAMERA, CameraSelector.DEFAULT_FRONT_CAMERA)
                    .firstOrNull { provider.hasCamera(it) }
                if (selector == null) {
                    showMessage(getString(R.string.no_camera_device))
                    return@addListener
                }
                val preview = Preview.Builder().build().also { it.setSurfaceProvider(binding.preview.surfaceProvider) }
                val analysis = ImageAnalysis.Builder()
                    .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                    .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                    .build()
                analysis.setAnalyzer(analysisExecutor) { image -> analyze(image) }
                provider.unbindAll()
                provider.bindToLifecycle(this, selector, preview, analysis)
            } catch (e: Exception) {
                showMessage(getString(R.string.camera_failed, e.message ?: e.javaClass.simpleName))
            }
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(image: ImageProxy) {
        image.use {
            if (stillMode || !modelLoaded) return
            val frame = uprightBitmap(image)
            val detections = NanoDetNative.detect(frame, scoreThreshold)
            val now = System.nanoTime()
            if (lastFrameNanos != 0L) fps = 0.9f * fps + 0.1f * (1e9f / (now - lastFrameNanos))
            lastFrameNanos = now
            showDetections(detections, frame.width, frame.height, "%.1f FPS".format(fps))
        }
    }

    private fun uprightBitmap(image: ImageProxy): Bitmap {
        val bitmap = image.toBitmap()
        val rotation = image.imageInfo.rotationDegrees
        if (rotation == 0) return bitmap
        val matrix = Matrix().apply { postRotate(rotation.toFloat()) }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, matrix, true)
    }

    private fun detectStill(uri: Uri) {
        stillMode = true
        binding.preview.visibility = View.GONE
        binding.still.visibility = View.VISIBLE
        // decoding a 50-megapixel photo takes seconds and hundreds of MB: off the UI thread, downscaled
        analysisExecutor.execute {
            val bitmap = try {
                decode(uri)
            } catch (e: Exception) {  // IOException, unsupported format, out of memory for the pixels
                showMessage(getString(R.string.photo_failed, e.message ?: e.javaClass.simpleName))
                return@execute
            }
            runOnUiThread { binding.still.setImageBitmap(bitmap) }
            if (!modelLoaded) return@execute
            val detections = NanoDetNative.detect(bitmap, scoreThreshold)
            showDetections(detections, bitmap.width, bitmap.height, "still image")
        }
    }

    /** The photo as an ARGB_8888 bitmap whose longer side is at most MAX_PHOTO_SIDE. */
    private fun decode(uri: Uri): Bitmap {
        val bitmap = if (Build.VERSION.SDK_INT >= 28) {
            ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, info, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
                val side = maxOf(info.size.width, info.size.height)
                if (side > MAX_PHOTO_SIDE) {
                    decoder.setTargetSize(info.size.width * MAX_PHOTO_SIDE / side, info.size.height * MAX_PHOTO_SIDE / side)
                }
            }
        } else {
            val bounds = BitmapFactory.Options().apply { inJustDecodeBounds = true }
            contentResolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, bounds) }
            var sample = 1
            while (maxOf(bounds.outWidth, bounds.outHeight) / (sample * 2) >= MAX_PHOTO_SIDE) sample *= 2
            val options = BitmapFactory.Options().apply { inSampleSize = sample }
            contentResolver.openInputStream(uri).use { BitmapFactory.decodeStream(it, null, options) }
                ?: throw java.io.IOException("not an image")
        }
        return if (bitmap.config == Bitmap.Config.ARGB_8888) bitmap else bitmap.copy(Bitmap.Config.ARGB_8888, false)
    }

    private fun showCamera() {
        stillMode = false
        binding.still.visibility = View.GONE
        binding.preview.visibility = View.VISIBLE
    }

    private fun showDetections(detections: FloatArray, width: Int, height: Int, prefix: String) {
        val model = manifest ?: return
        val status = "$prefix · ${"%.1f".format(NanoDetNative.lastInferenceMs())} ms · ${model.model} " +
            "${NanoDetNative.runningPrecision()} · ${detections.size / 6} objects"
        binding.overlay.show(detections, model.classNames, width, height, status)
    }

    companion object {
        const val MAX_PHOTO_SIDE = 2048
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.shutdown()
    }
}
