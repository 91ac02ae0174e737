// The image augmentation layers against Keras's own: for every layer, interpolation and fill mode,
// Tandem's output on a batch of images equals Keras's `transform_images` given the same draws (the
// transformation dict Keras would have drawn: flips, translations, rotation matrices from its
// _compute_affine_matrix, zooms, contrast factors, brightness shifts). Needs TANDEM_KERAS_PYTHON.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

@testable import TandemCore

final class AugmentationKerasTests: XCTestCase {
    func testEachLayerEqualsKerasTransformImagesForTheSameDraws() throws {
        guard let python = ProcessInfo.processInfo.environment["TANDEM_KERAS_PYTHON"],
            FileManager.default.isExecutableFile(atPath: python)
        else { throw XCTSkip("TANDEM_KERAS_PYTHON is not set (scripts/test.sh installs Keras and sets it)") }
        let dir = temporaryDirectory("augment")
        let cases: [(Augmentation.Kind, Bool, Augmentation.Fill, String)] = [
            (.flip(horizontal: true, vertical: false), true, .reflect, "RandomFlip('horizontal')"),
            (.flip(horizontal: true, vertical: true), true, .reflect, "RandomFlip()"),
            (.flip(horizontal: false, vertical: true), true, .reflect, "RandomFlip('vertical')"),
            (
                .translation(height: -0.3...0.3, width: -0.4...0.25), true, .reflect,
                "RandomTranslation(0.3, (-0.4, 0.25))"
            ),
            (
                .translation(height: -0.3...0.3, width: -0.4...0.25), false, .constant,
                "RandomTranslation(0.3, (-0.4, 0.25), fill_mode='constant', interpolation='nearest', fill_value=0.7)"
            ),
            (.rotation(-0.3...0.3), true, .reflect, "RandomRotation(0.3)"),
            (.rotation(-0.3...0.3), true, .wrap, "RandomRotation(0.3, fill_mode='wrap')"),
            (.rotation(-0.3...0.3), true, .constant, "RandomRotation(0.3, fill_mode='constant', fill_value=0.7)"),
            (
                .rotation(-0.3...0.3), false, .nearest,
                "RandomRotation(0.3, fill_mode='nearest', interpolation='nearest')"
            ),
            (.zoom(height: -0.4...0.3, width: nil), true, .reflect, "RandomZoom((-0.4, 0.3))"),
            (
                .zoom(height: -0.4...0.3, width: -0.2...0.5), true, .constant,
                "RandomZoom((-0.4, 0.3), (-0.2, 0.5), fill_mode='constant', fill_value=0.7)"
            ),
            (.contrast(lower: 0, upper: 0.6, range: 0...9), true, .reflect, "RandomContrast(0.6, value_range=(0, 9))"),
            (
                .brightness(-0.3...0.2, range: 0...9), true, .reflect,
                "RandomBrightness((-0.3, 0.2), value_range=(0, 9))"
            ),
        ]
        let rows = 4
        var rng = SeededGenerator(seed: 21)
        let images = (0..<(rows * 7 * 5 * 2)).map { _ in Float(rng.uniform(0, 9)) }
        try images.withUnsafeBufferPointer {
            try NPYArray.write(floats: $0, shape: [rows, 7, 5, 2], to: dir + "/x.npy")
        }
        var lines: [String] = []
        for (k, (kind, bilinear, fill, keras)) in cases.enumerated() {
            let x = InputLayer(name: "x", kind: .features, shape: [7, 5, 2])
            let a = Augmentation(name: "augment", input: x, kind: kind, bilinear: bilinear, fill: fill, fillValue: 0.7)
            let m = Model(inputs: [x], outputs: [a], maxBatch: rows)
            x.output.values.update(from: images, count: images.count)
            m.dropoutKeys.seed = UInt64(30 + k)
            m.forward(batch: rows, training: true)
            try UnsafeBufferPointer(start: a.output.values, count: images.count).withMemoryRebound(to: Float.self) {
                try NPYArray.write(floats: $0, shape: [rows, 7, 5, 2], to: dir + "/y\(k).npy")
            }
            let draws = (0..<rows).map { a.draws(position: $0) }
            lines.append(
                "\(k)\t\(keras)\t\(draws.map { "[" + $0.map { "\($0)" }.joined(separator: ",") + "]" }.joined(separator: ";"))"
            )
        }
        try lines.joined(separator: "\n").write(toFile: dir + "/cases.tsv", atomically: true, encoding: .utf8)
        let run = try Harness.run(
            python,
            [
                "-c",
                #"""
                import sys, json, numpy as np, keras
                from keras.layers import *
                d = sys.argv[1]
                x = np.load(d + "/x.npy"); B, H, W = x.shape[:3]
                worst = {}
                for line in open(d + "/cases.tsv").read().split("\n"):
                    k, make, draws = line.split("\t")
                    layer = eval(make)
                    v = np.array([json.loads(s) for s in draws.split(";")], np.float32)
                    name = type(layer).__name__
                    if name == "RandomFlip":
                        t = {"flips": (v[:, 0] == 1).reshape(B, 1, 1, 1), "input_shape": x.shape}
                    elif name == "RandomTranslation":
                        t = {"translations": v, "input_shape": x.shape}
                    elif name == "RandomRotation":
                        z = np.zeros(B, np.float32)
                        m = layer._compute_affine_matrix(
                            center_x=0.5, center_y=0.5, angle=v[:, 0], translate_x=z, translate_y=z, scale=z + 1,
                            shear_x=z, shear_y=z, height=H, width=W)
                        t = {"rotation_matrix": m, "image_height": H, "image_width": W, "batch_size": B}
                    elif name == "RandomZoom":
                        t = {"width_zoom": v[:, 0:1], "height_zoom": v[:, 1:2], "input_shape": x.shape}
                    elif name == "RandomContrast":
                        t = {"contrast_factor": v[:, 0].reshape(B, 1, 1, 1)}
                    else:
                        t = {"rgb_delta": v[:, 0].reshape(B, 1, 1, 1)}
                    theirs = np.asarray(layer.transform_images(x, t, training=True))
                    worst[k] = float(np.max(np.abs(theirs - np.load(d + "/y%s.npy" % k))))
                print(json.dumps(worst))
                """#, dir,
            ], timeout: 300, environment: ["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"])
        XCTAssertEqual(run.status, 0, run.stderr)
        guard run.status == 0 else { return }
        let worst =
            try JSONSerialization.jsonObject(with: Data(run.stdout.split(separator: "\n").last!.utf8))
            as! [String: Double]
        XCTAssertEqual(worst.count, cases.count)
        for (k, c) in cases.enumerated() {
            // Values in [0, 9]: a few ulps (float32 sums of four taps in another order; measured 9.5e-7).
            XCTAssertLessThan(worst["\(k)"] ?? .infinity, 3e-6, "\(c.3)")
        }
    }
}
