package io.nanodet.deploy.demo

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
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

        manifest = ModelManifest.load(assets)
        val model = manifest
        if (model == null) {
            Toast.makeText(this, R.string.no_model, Toast.LENGTH_LONG).show()
            return
        }
        scoreThreshold = maxOf(model.scoreThreshold, scoreThreshold)
        loadModel(useGpu = false)

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
        binding.gpu.setOnCheckedChangeListener { _, checked -> analysisExecutor.execute { loadModel(checked) } }
        binding.photo.setOnClickListener { pickPhoto.launch("image/*") }
        binding.camera.setOnClickListener { showCamera() }

        if (ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED) {
            startCamera()
        } else {
            requestCamera.launch(Manifest.permission.CAMERA)
        }
    }

    private fun loadModel(useGpu: Boolean) {
        val model = manifest ?: return
        val threads = minOf(4, Runtime.getRuntime().availableProcessors())
        if (!NanoDetNative.load(assets, model, useGpu, threads)) {
            runOnUiThread { Toast.makeText(this, "ncnn could not load ${model.paramFile}", Toast.LENGTH_LONG).show() }
        }
    }

    private fun startCamera() {
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val preview = Preview.Builder().build().also { it.setSurfaceProvider(binding.preview.surfaceProvider) }
            val analysis = ImageAnalysis.Builder()
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisExecutor) { image -> analyze(image) }
            provider.unbindAll()
            provider.bindToLifecycle(this, CameraSelector.DEFAULT_BACK_CAMERA, preview, analysis)
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(image: ImageProxy) {
        image.use {
            if (stillMode || manifest == null) return
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
        val bitmap = decode(uri).copy(Bitmap.Config.ARGB_8888, false)
        binding.preview.visibility = View.GONE
        binding.still.visibility = View.VISIBLE
        binding.still.setImageBitmap(bitmap)
        analysisExecutor.execute {
            val detections = NanoDetNative.detect(bitmap, scoreThreshold)
            showDetections(detections, bitmap.width, bitmap.height, "still image")
        }
    }

    private fun decode(uri: Uri): Bitmap =
        if (Build.VERSION.SDK_INT >= 28) {
            ImageDecoder.decodeBitmap(ImageDecoder.createSource(contentResolver, uri)) { decoder, _, _ ->
                decoder.allocator = ImageDecoder.ALLOCATOR_SOFTWARE
            }
        } else {
            @Suppress("DEPRECATION")
            MediaStore.Images.Media.getBitmap(contentResolver, uri)
        }

    private fun showCamera() {
        stillMode = false
        binding.still.visibility = View.GONE
        binding.preview.visibility = View.VISIBLE
    }

    private fun showDetections(detections: FloatArray, width: Int, height: Int, prefix: String) {
        val model = manifest ?: return
        val status = "$prefix · ${"%.1f".format(NanoDetNative.lastInferenceMs())} ms · ${model.model} " +
            "${model.precision} · ${detections.size / 6} objects"
        binding.overlay.show(detections, model.classNames, width, height, status)
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.shutdown()
    }
}
