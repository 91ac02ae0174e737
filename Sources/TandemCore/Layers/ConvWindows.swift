// The windows of a 2-D convolution or pooling over one channels-last image [H, W, C], and the
// gather (im2col) and scatter-add (col2im) between an image and a matrix with one row per window.
// A 1-D layer is the same with H = 1 (a sequence [T, C] is an image of one row).
//
// Window (i, j) of the grid with tap (u, v) reads image cell
//   (i·strideY + u·dilationY − top, j·strideX + v·dilationX − left), zero outside the image.
// A convolution's grid is its output and its image the input; a transposed convolution runs the
// same map the other way (its grid is the input, its image the output), so both share it.

/// The windows of one 2-D operation: which image cells each grid cell's taps cover.
package struct WindowGeometry: Sendable, Equatable {
    package let imageHeight: Int, imageWidth: Int
    package let kernelHeight: Int, kernelWidth: Int
    package let strideY: Int, strideX: Int
    package let dilationY: Int, dilationX: Int
    /// Cells of padding before the first row and column (may be negative: a transposed
    /// convolution's output starts inside its first window).
    package let top: Int, left: Int
    package let gridHeight: Int, gridWidth: Int

    package var taps: Int { kernelHeight * kernelWidth }
    package var windows: Int { gridHeight * gridWidth }
    package var imageCells: Int { imageHeight * imageWidth }

    package init(
        image: (Int, Int), kernel: (Int, Int), stride: (Int, Int) = (1, 1), dilation: (Int, Int) = (1, 1),
        padding: (top: Int, left: Int), grid: (Int, Int)
    ) {
        (imageHeight, imageWidth) = image
        (kernelHeight, kernelWidth) = kernel
        (strideY, strideX) = stride
        (dilationY, dilationX) = dilation
        (top, left) = padding
        (gridHeight, gridWidth) = grid
    }

    /// Output length and padding before, along one axis, as XLA pads ("valid": none; "same":
    /// ⌈n/s⌉ outputs with max((out−1)·s + span − n, 0) padding, the smaller half first).
    package static func axis(length n: Int, kernel k: Int, stride s: Int, dilation d: Int, same: Bool)
        -> (out: Int, before: Int)
    {
        let span = d * (k - 1) + 1
        if !same { return (n >= span ? (n - span) / s + 1 : 0, 0) }
        let out = (n + s - 1) / s
        return (out, max((out - 1) * s + span - n, 0) / 2)
    }

    /// A forward window map (convolution or pooling) over an image, "valid" or "same".
    package static func forward(
        image: (Int, Int), kernel: (Int, Int), stride: (Int, Int), dilation: (Int, Int) = (1, 1), same: Bool
    ) -> WindowGeometry {
        let y = axis(length: image.0, kernel: kernel.0, stride: stride.0, dilation: dilation.0, same: same)
        let x = axis(length: image.1, kernel: kernel.1, stride: stride.1, dilation: dilation.1, same: same)
        return WindowGeometry(
            image: image, kernel: kernel, stride: stride, dilation: dilation, padding: (y.before, x.before),
            grid: (y.out, x.out))
    }

    /// The image row tap u of grid row i reads (may be outside 0..<imageHeight).
    @inline(__always) package func row(_ i: Int, _ u: Int) -> Int { i * strideY + u * dilationY - top }
    @inline(__always) package func column(_ j: Int, _ v: Int) -> Int { j * strideX + v * dilationX - left }

    /// Calls `body(image cell, tap)` for each tap of grid cell (i, j) that lands inside the image, in the
    /// window's row-major order (the direct loops: depthwise convolution, pooling).
    @inline(__always) package func forEachCell(_ i: Int, _ j: Int, _ body: (_ cell: Int, _ tap: Int) -> Void) {
        for u in 0..<kernelHeight {
            let r = row(i, u)
            guard r >= 0 && r < imageHeight else { continue }
            for v in 0..<kernelWidth {
                let c = column(j, v)
                guard c >= 0 && c < imageWidth else { continue }
                body(r * imageWidth + c, u * kernelWidth + v)
            }
        }
    }

    /// columns[w, (u·kw + v)·count + c] = image[row, column, first + c] for every window w of one
    /// image with `channels` channels (0 outside it). Rows of `columns` are `count·taps` apart.
    package func gather(
        _ image: UnsafePointer<Float>, channels: Int, first: Int = 0, count: Int,
        into columns: UnsafeMutablePointer<Float>
    ) {
        let patch = count * taps
        for i in 0..<gridHeight {
            for j in 0..<gridWidth {
                var cell = columns + (i * gridWidth + j) * patch
                for u in 0..<kernelHeight {
                    let r = row(i, u)
                    for v in 0..<kernelWidth {
                        let c = column(j, v)
                        if r >= 0 && r < imageHeight && c >= 0 && c < imageWidth {
                            cell.update(from: image + (r * imageWidth + c) * channels + first, count: count)
                        } else {
                            cell.update(repeating: 0, count: count)
                        }
                        cell += count
                    }
                }
            }
        }
    }

    /// The transpose of `gather`: image[row, column, first + c] += columns[w, (u·kw + v)·count + c].
    package func scatterAdd(
        _ columns: UnsafePointer<Float>, channels: Int, first: Int = 0, count: Int,
        into image: UnsafeMutablePointer<Float>
    ) {
        let patch = count * taps
        for i in 0..<gridHeight {
            for j in 0..<gridWidth {
                var cell = columns + (i * gridWidth + j) * patch
                for u in 0..<kernelHeight {
                    let r = row(i, u)
                    for v in 0..<kernelWidth {
                        let c = column(j, v)
                        if r >= 0 && r < imageHeight && c >= 0 && c < imageWidth {
                            let to = image + (r * imageWidth + c) * channels + first
                            for k in 0..<count { to[k] += cell[k] }
                        }
                        cell += count
                    }
                }
            }
        }
    }
}
