package io.nanodet.deploy.demo

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.RectF
import android.util.AttributeSet
import android.view.View

/** Boxes, labels and the FPS / inference-time line, drawn over the preview or the still image. */
class OverlayView(context: Context, attrs: AttributeSet?) : View(context, attrs) {
    private var boxes = FloatArray(0)
    private var classNames: List<String> = emptyList()
    private var sourceWidth = 1
    private var sourceHeight = 1
    private var status = ""

    private val boxPaint = Paint().apply { style = Paint.Style.STROKE; strokeWidth = 4f; isAntiAlias = true }
    private val textPaint = Paint().apply { color = Color.WHITE; textSize = 36f; isAntiAlias = true }
    private val labelBackground = Paint().apply { style = Paint.Style.FILL }

    fun show(detections: FloatArray, names: List<String>, width: Int, height: Int, statusLine: String) {
        boxes = detections
        classNames = names
        sourceWidth = width
        sourceHeight = height
        status = statusLine
        postInvalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        // the preview and the still image are shown fitCenter: map source pixels the same way
        val scale = minOf(width.toFloat() / sourceWidth, height.toFloat() / sourceHeight)
        val dx = (width - sourceWidth * scale) / 2
        val dy = (height - sourceHeight * scale) / 2
        for (i in 0 until boxes.size / 6) {
            val label = boxes[i * 6 + 5].toInt()
            val colour = Color.HSVToColor(floatArrayOf((label * 47 % 360).toFloat(), 0.8f, 1f))
            boxPaint.color = colour
            labelBackground.color = colour
            val rect = RectF(dx + boxes[i * 6] * scale, dy + boxes[i * 6 + 1] * scale,
                             dx + boxes[i * 6 + 2] * scale, dy + boxes[i * 6 + 3] * scale)
            canvas.drawRect(rect, boxPaint)
            val text = "${classNames.getOrElse(label) { "#$label" }} ${"%.2f".format(boxes[i * 6 + 4])}"
            val w = textPaint.measureText(text)
            canvas.drawRect(rect.left, rect.top - 40f, rect.left + w + 8f, rect.top, labelBackground)
            canvas.drawText(text, rect.left + 4f, rect.top - 8f, textPaint)
        }
        canvas.drawText(status, 16f, 48f, textPaint)
    }
}
