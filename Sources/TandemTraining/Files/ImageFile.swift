// Image files (docs/SPEC.md §14, §12): PNG through libpng's simplified API, JPEG through
// libjpeg-turbo's TurboJPEG API. Both report a corrupt or truncated file as a return code (no
// setjmp), so a bad file is a message, never a crash. The file's size, and the width and height
// its header claims, are checked before any pixel buffer is allocated. Resizing is
// tf.image.resize's bilinear method: half-pixel centres, no antialiasing, float32.

import CPNG
import CTurboJPEG
import Foundation

/// What is wrong with one image file (the caller names the file and the CSV line).
package struct ImageProblem: Error, Sendable {
    package let message: String
    init(_ message: String) { self.message = message }
}

package enum ImageFile {
    /// Checked before anything is allocated: the file's bytes, each side, the pixels.
    package static let maxFileBytes = 256 << 20
    package static let maxSide = 16384
    package static let maxPixels = 1 << 26

    /// 8-bit pixels, row-major, `channels` per pixel.
    package struct Decoded: Sendable {
        package var height: Int, width: Int, channels: Int
        package var pixels: [UInt8]
    }

    /// Reads `path` (a regular file) and decodes it into `channels` bytes per pixel: 1 gray, 3 RGB,
    /// 4 RGBA. Conversions are the libraries': gray is replicated, an alpha channel the input does
    /// not take is composited onto black (libpng), a JPEG's alpha is 255.
    package static func read(path: String, channels: Int) throws(ImageProblem) -> Decoded {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageProblem(errno == ENOENT ? "file not found" : String(cString: strerror(errno))) }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw ImageProblem("not a regular file")
        }
        let size = Int(info.st_size)
        guard size <= maxFileBytes else {
            throw ImageProblem("\(size) bytes; image files are limited to \(maxFileBytes >> 20) MiB")
        }
        guard size > 0 else { throw ImageProblem("the file is empty") }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 16)
        defer { buffer.deallocate() }
        var done = 0
        while done < size {
            let n = Foundation.read(fd, buffer.baseAddress! + done, size - done)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw ImageProblem(n == 0 ? "the file shrank while read" : String(cString: strerror(errno)))
            }
            done += n
        }
        return try decode(UnsafeRawBufferPointer(buffer), channels: channels)
    }

    /// Decodes a PNG or JPEG held in `bytes` (told apart by their signatures).
    package static func decode(_ bytes: UnsafeRawBufferPointer, channels: Int) throws(ImageProblem) -> Decoded {
        precondition([1, 3, 4].contains(channels))
        let png: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
        if bytes.count >= 8 && bytes.prefix(8).elementsEqual(png) { return try decodePNG(bytes, channels: channels) }
        if bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF {
            return try decodeJPEG(bytes, channels: channels)
        }
        throw ImageProblem("not a PNG or JPEG file (its first bytes are neither signature)")
    }

    /// The header's size against the limits, and against what the file's bytes can hold: deflate
    /// expands at most ~1032×, and a JPEG spends at least about 2 bits on an 8 × 8 block, so a small
    /// file claiming millions of pixels is refused before its buffer is allocated.
    private static func checkSize(width: Int, height: Int, format: String, fileBytes: Int) throws(ImageProblem) {
        guard width > 0, height > 0, width <= maxSide, height <= maxSide, width * height <= maxPixels else {
            throw ImageProblem(
                "the \(format) header claims \(width) × \(height) pixels (the limit is \(maxSide) a side and \(maxPixels) pixels)"
            )
        }
        let perByte = format == "PNG" ? 1100 : 2048
        guard width * height <= fileBytes * perByte else {
            throw ImageProblem(
                "the \(format) header claims \(width) × \(height) pixels, more than its \(fileBytes) bytes can hold")
        }
    }

    private static func decodePNG(_ bytes: UnsafeRawBufferPointer, channels: Int) throws(ImageProblem) -> Decoded {
        var image = png_image()
        image.version = 1  // PNG_IMAGE_VERSION
        func message() -> String {
            withUnsafeBytes(of: image.message) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        }
        guard png_image_begin_read_from_memory(&image, bytes.baseAddress, bytes.count) != 0 else {
            throw ImageProblem("not a readable PNG (libpng: \(message()))")
        }
        defer { png_image_free(&image) }
        let (width, height) = (Int(image.width), Int(image.height))
        try checkSize(width: width, height: height, format: "PNG", fileBytes: bytes.count)
        // PNG_FORMAT_GRAY, PNG_FORMAT_RGB, PNG_FORMAT_RGBA: 8-bit sRGB.
        image.format = channels == 1 ? 0 : channels == 3 ? 2 : 3
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        let ok = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, 0, nil) }
        guard ok != 0 else { throw ImageProblem("a corrupt or truncated PNG (libpng: \(message()))") }
        return Decoded(height: height, width: width, channels: channels, pixels: pixels)
    }

    private static func decodeJPEG(_ bytes: UnsafeRawBufferPointer, channels: Int) throws(ImageProblem) -> Decoded {
        guard let handle = tjInitDecompress() else { throw ImageProblem("cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        let source = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        func message() -> String { String(cString: tjGetErrorStr2(handle)) }
        var w: Int32 = 0
        var h: Int32 = 0
        var subsampling: Int32 = 0
        var colorspace: Int32 = 0
        guard tjDecompressHeader3(handle, source, UInt(bytes.count), &w, &h, &subsampling, &colorspace) == 0 else {
            throw ImageProblem("not a readable JPEG (libjpeg-turbo: \(message()))")
        }
        try checkSize(width: Int(w), height: Int(h), format: "JPEG", fileBytes: bytes.count)
        let format = channels == 1 ? TJPF_GRAY : channels == 3 ? TJPF_RGB : TJPF_RGBA
        var pixels = [UInt8](repeating: 0, count: Int(w) * Int(h) * channels)
        // The accurate integer IDCT (libjpeg's default, as tf.io.decode_jpeg's); a warning (a truncated
        // file's "premature end of data") stops the decode instead of filling the rest with gray.
        let flags = Int32(TJFLAG_ACCURATEDCT | TJFLAG_STOPONWARNING)
        let status = pixels.withUnsafeMutableBufferPointer {
            tjDecompress2(handle, source, UInt(bytes.count), $0.baseAddress, w, 0, h, format.rawValue, flags)
        }
        guard status == 0 else { throw ImageProblem("a corrupt or truncated JPEG (libjpeg-turbo: \(message()))") }
        return Decoded(height: Int(h), width: Int(w), channels: channels, pixels: pixels)
    }

    /// tf.image.resize(image, [height, width], "bilinear") of `image` (antialias off, half-pixel
    /// centres), as float32 values 0…255 in `out` [height, width, channels]; a copy when the size is
    /// already the input's.
    package static func resize(_ image: Decoded, height: Int, width: Int, into out: UnsafeMutablePointer<Float>) {
        let c = image.channels
        image.pixels.withUnsafeBufferPointer { p in
            if image.height == height && image.width == width {
                for i in 0..<(height * width * c) { out[i] = Float(p[i]) }
                return
            }
            let ys = weights(input: image.height, output: height)
            let xs = weights(input: image.width, output: width)
            for (i, y) in ys.enumerated() {
                let top = y.lower * image.width * c
                let bottom = y.upper * image.width * c
                for (j, x) in xs.enumerated() {
                    let o = out + (i * width + j) * c
                    for k in 0..<c {
                        let tl = Float(p[top + x.lower * c + k])
                        let tr = Float(p[top + x.upper * c + k])
                        let bl = Float(p[bottom + x.lower * c + k])
                        let br = Float(p[bottom + x.upper * c + k])
                        let t = tl + (tr - tl) * x.lerp
                        let b = bl + (br - bl) * x.lerp
                        o[k] = t + (b - t) * y.lerp
                    }
                }
            }
        }
    }

    /// TensorFlow's compute_interpolation_weights with its HalfPixelScaler, in float32.
    private static func weights(input: Int, output: Int) -> [(lower: Int, upper: Int, lerp: Float)] {
        let scale = Float(input) / Float(output)
        return (0..<output).map { o in
            let x = (Float(o) + 0.5) * scale - 0.5
            let floor = x.rounded(.down)
            return (max(Int(floor), 0), min(Int(x.rounded(.up)), input - 1), x - floor)
        }
    }
}
