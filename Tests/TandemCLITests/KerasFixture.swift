// The Keras archives the archive, optimizer and equivalence tests share (built once by
// scripts/keras_models.py), and the base class that runs Keras and Tandem on them.

import Foundation
import Tandem
import TandemTestSupport
import XCTest

/// The archives and their generated data, made once for every test here.
enum KerasFixture {
    static let models = [
        "headline", "sequential", "three_heads", "shared", "unseen", "merges", "sequence_core", "recurrent",
        "conv_bilstm", "sequential_text", "normalized", "gru_text", "regression", "losses", "metrics",
        "dict_outputs", "functional_guide", "activation_layers", "more_losses", "more_layers", "sequence_moves",
        "dot_products", "constrained", "reductions", "feature_normalization", "masking", "sequential_masking",
        "activity", "softmax_axes", "coupled_losses", "frozen", "pooling_keepdims", "image_heads", "image_resampling",
        "dense_prediction", "token_tags", "image_timeseries", "attention_heads",
        "masked_encoder", "attention_layers", "hub_encoder", "hub_decoder_lm",
        "hub_classifier", "hub_seq2seq",
    ]

    /// Variables no update moves (a Normalization's adapted statistics), by model: left out of the
    /// tests' "every tensor moved" check.
    static let untrained = [
        // A key projection's bias: a shift common to every key leaves the softmax unchanged, so its gradient
        // is zero up to rounding.
        "attention_heads": Set(["self_attention/key/bias"]), "masked_encoder": Set(["attention/key/bias"]),
        "attention_layers": Set(["grouped/key/bias"]),
        "hub_encoder": Set(["encoder/self_attention_layer/key/bias", "encoder_2/self_attention_layer/key/bias"]),
        "hub_decoder_lm": Set(["decoder/self_attention/key/bias", "decoder_2/self_attention/key/bias"]),
        "hub_classifier": Set(["encoder/self_attention_layer/key/bias"]),
        "hub_seq2seq": Set([
            "encoder/self_attention_layer/key/bias", "decoder/self_attention/key/bias",
            "decoder/cross_attention/key/bias",
        ]),
        "feature_normalization": Set(["norm/mean", "norm/variance", "norm/count"]),
        // Frozen layers (trainable = False), the frozen BatchNormalization's moving statistics included.
        "frozen": Set(
            [
                "pretrained/embeddings", "base/kernel", "base/bias", "frozen_norm/gamma", "frozen_norm/beta",
                "frozen_norm/moving_mean", "frozen_norm/moving_variance", "frozen_lstm/kernel",
                "frozen_lstm/recurrent_kernel", "frozen_lstm/bias",
            ]),
    ]

    /// The length generated for a model's None axes (`Input(shape=(None,))`), by model.
    static let lengths = ["functional_guide": 9, "image_timeseries": 12]

    /// Archives with dropout, noise or augmentation on: their draws are Tandem's, so they are compared
    /// across rank counts.
    static let randomModels = ["dropout", "noise_layers", "augmentation", "attention_dropout", "hub_dropout"]

    /// One two-head model compiled with each optimizer, modifier and schedule (keras_models.py OPTIMIZERS).
    static let optimizerModels = [
        "adam_amsgrad", "adamw", "rmsprop_centered", "adagrad", "adamax", "nadam", "sgd_clipnorm",
        "adam_global_clipnorm", "rmsprop_clipvalue", "sgd_weight_decay", "exponential", "inverse_time",
        "piecewise", "polynomial", "cosine", "cosine_restarts", "adam_accumulate",
        "rmsprop_accumulate", "adadelta", "lion", "adam_ema", "ftrl", "adafactor", "lamb", "muon", "schedule_free",
        "loss_scale",
    ].map { "opt_" + $0 }

    struct Made {
        let dir: String
        let python: String
    }

    nonisolated(unsafe) private static var made: Result<Made, Error>?
    private static let lock = NSLock()

    /// The Python with Keras that scripts/test.sh installs.
    static func python() throws -> String {
        guard let p = ProcessInfo.processInfo.environment["TANDEM_KERAS_PYTHON"],
            FileManager.default.isExecutableFile(atPath: p)
        else {
            throw XCTSkip("TANDEM_KERAS_PYTHON is not set (scripts/test.sh installs Keras and sets it)")
        }
        return p
    }

    static func get() throws -> Made {
        let p = try python()
        lock.lock()
        defer { lock.unlock() }
        if let made { return try made.get() }
        let result = Result { () throws -> Made in
            let dir = temporaryDirectory("kerasfixture")
            let built = try keras(p, ["build", "--out", dir + "/models"])
            guard built.status == 0 else { throw TandemError.training("keras_models.py build failed: \(built.stderr)") }
            for m in models + randomModels + optimizerModels {
                // 37 samples at batch 8: the last batch has 5.
                let gen = try Harness.tandem(
                    [
                        "gen-data", "--model", "\(dir)/models/\(m).keras", "--out", "\(dir)/data-\(m)", "--samples",
                        "37", "--seed", "3",
                    ] + (lengths[m].map { ["--seq-len", "\($0)"] } ?? []))
                guard gen.status == 0 else { throw TandemError.training("gen-data \(m): \(gen.stderr)") }
            }
            // Sample weights on one head of the headline model, as users pass them.
            var rng = SeededGenerator(seed: 9)
            let w = (0..<37).map { _ in Float(rng.uniform(0.3, 2.5)) }
            try w.withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: [37], to: dir + "/data-headline/main_output.sample_weight.npy")
            }
            // And on two heads of the metrics model, for its weighted_metrics, and on both heads of the
            // reductions model (mean_with_sample_weight divides by their sum).
            for (model, head, seed) in [
                ("metrics", "click", UInt64(10)), ("metrics", "score", 11), ("reductions", "summed", 12),
                ("reductions", "weighted", 13),
            ] {
                var g = SeededGenerator(seed: seed)
                let v = (0..<37).map { _ in Float(g.uniform(0.2, 3)) }
                try v.withUnsafeBufferPointer {
                    try NPYArray.write(floats: $0, shape: [37], to: dir + "/data-\(model)/\(head).sample_weight.npy")
                }
            }
            // Per-element losses: one weight per token on the dense_prediction model's tags, one per sample
            // (over every pixel) on its depth.
            var tokenWeights = SeededGenerator(seed: 15)
            let perToken = (0..<(37 * 7)).map { _ in Float(tokenWeights.uniform(0.2, 3)) }
            try perToken.withUnsafeBufferPointer {
                try NPYArray.write(
                    floats: $0, shape: [37, 7], to: dir + "/data-dense_prediction/tags.sample_weight.npy")
            }
            let perSample = (0..<37).map { _ in Float(tokenWeights.uniform(0.2, 3)) }
            try perSample.withUnsafeBufferPointer {
                try NPYArray.write(floats: $0, shape: [37], to: dir + "/data-dense_prediction/depth.sample_weight.npy")
            }
            // The padded models' sentences (token_tags, the attention models): sample i's last i % 5 tokens are padding
            // (id 0), other ids are 1…11.
            var sentences = [Int32]()
            var ids = SeededGenerator(seed: 16)
            for i in 0..<37 { for t in 0..<7 { sentences.append(t >= 7 - i % 5 ? 0 : Int32(1 + ids.below(11))) } }
            for m in [
                "token_tags", "masked_encoder", "attention_dropout", "hub_encoder", "hub_decoder_lm", "hub_seq2seq",
                "hub_dropout",
            ] {
                try sentences.withUnsafeBufferPointer {
                    try NPYArray.write(ints: $0, shape: [37, 7], to: dir + "/data-\(m)/tokens.npy")
                }
            }
            // The masking model's steps: sample i's last i % 4 steps, and step 1 of every fifth sample,
            // are the mask value −1 (whole steps masked); other values are never −1.
            var steps = [Float]()
            var g = SeededGenerator(seed: 14)
            for i in 0..<37 {
                for t in 0..<6 {
                    let masked = t >= 6 - i % 4 || (t == 1 && i % 5 == 0)
                    for _ in 0..<3 { steps.append(masked ? -1 : Float(g.uniform(-0.9, 2))) }
                }
            }
            for m in ["masking", "sequential_masking", "token_tags"] {
                try steps.withUnsafeBufferPointer {
                    try NPYArray.write(floats: $0, shape: [37, 6, 3], to: dir + "/data-\(m)/steps.npy")
                }
            }
            return Made(dir: dir, python: p)
        }
        made = result
        return try result.get()
    }

    /// A keras_models.py command, run by the one worker process (`keras_models.py serve`): Python's
    /// and Keras's start-up (~2 s) is paid once rather than by each of the suite's ~120 Keras calls.
    static func keras(_ python: String, _ args: [String]) throws -> RunResult {
        workerLock.lock()
        defer { workerLock.unlock() }
        if worker == nil || worker!.python != python { worker = try KerasWorker(python: python) }
        do { return try worker!.run(args, timeout: 300) } catch {
            worker = nil  // a worker that failed to answer is stopped; the next call starts another
            throw error
        }
    }
    nonisolated(unsafe) private static var worker: KerasWorker?
    private static let workerLock = NSLock()
}

/// `keras_models.py serve`: one Python process answering command lines, one JSON line each way.
final class KerasWorker {
    let python: String
    private let process = Process()
    private let input = Pipe(), output = Pipe()
    private var pending = Data()

    init(python: String) throws {
        self.python = python
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [Harness.packageRoot + "/scripts/keras_models.py", "serve"]
        var env = ProcessInfo.processInfo.environment
        env.merge(["KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"]) { $1 }
        process.environment = env
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError  // the libraries' own messages, outside any command
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

    /// One command's status and output, as running `python keras_models.py ARGS` would give them.
    func run(_ args: [String], timeout: Double) throws -> RunResult {
        let start = Date()
        let request = try JSONSerialization.data(withJSONObject: ["args": args]) + Data("\n".utf8)
        try input.fileHandleForWriting.write(contentsOf: request)
        // The answer line, read on another thread so a worker that hangs is stopped at the timeout.
        let done = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var line: Data?
        let reader = output.fileHandleForReading
        nonisolated(unsafe) var buffer = pending
        DispatchQueue.global().async {
            while true {
                if let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    line = buffer[..<newline]
                    buffer = buffer[(newline + 1)...]
                    break
                }
                let chunk = reader.availableData
                if chunk.isEmpty { break }  // the worker ended
                buffer += chunk
            }
            done.signal()
        }
        guard done.wait(timeout: .now() + timeout) == .success else {
            process.terminate()
            throw TandemError.training("keras_models.py \(args.joined(separator: " ")): no answer after \(timeout) s")
        }
        pending = Data(buffer)
        guard let line, let answer = try JSONSerialization.jsonObject(with: Data(line)) as? [String: Any],
            let status = answer["status"] as? Int
        else {
            throw TandemError.training(
                "keras_models.py serve ended or answered nothing for: \(args.joined(separator: " "))")
        }
        return RunResult(
            status: Int32(status), stdout: answer["stdout"] as? String ?? "", stderr: answer["stderr"] as? String ?? "",
            seconds: Date().timeIntervalSince(start))
    }
}

/// The fixture and the Keras / Tandem runs the archive tests share (no tests of its own).
class KerasFixtureTestCase: XCTestCase {
    var f: KerasFixture.Made!
    var dir = ""

    /// Whether the class's tests use the shared archives (built once per test process, ~1.5 min); the
    /// backbones build their own.
    class var usesSharedArchives: Bool { true }

    override func setUpWithError() throws {
        f =
            Self.usesSharedArchives
            ? try KerasFixture.get() : KerasFixture.Made(dir: "", python: try KerasFixture.python())
        dir = temporaryDirectory()
    }

    func model(_ m: String) -> String { "\(f.dir)/models/\(m).keras" }
    func data(_ m: String) -> String { "\(f.dir)/data-\(m)" }
    func keras(_ args: [String]) throws -> RunResult { try KerasFixture.keras(f.python, args) }

    /// Keras's fit from `archive` for `epochs`: the saved archive, its weights and its history.
    /// With `saveEpochs`, also `<archive>.epoch<N>.keras` after each epoch.
    func kerasFit(
        _ archive: String, _ m: String, epochs: Int, saveEpochs: Bool = false, dataDir: String? = nil,
        file: StaticString = #filePath, line: UInt = #line
    ) throws -> (archive: String, weights: [String: [Float]], history: [String: [Double]]) {
        let out = dir + "/keras-\(m)-\(UUID().uuidString.prefix(6)).keras"
        let fit = try keras(
            [
                "fit", "--model", archive, "--data", dataDir ?? data(m), "--out", out, "--batch-size", "8", "--epochs",
                "\(epochs)",
            ] + (saveEpochs ? ["--save-epochs"] : []))
        XCTAssertEqual(fit.status, 0, fit.stderr, file: file, line: line)
        let history =
            try JSONSerialization.jsonObject(with: Data(fit.stdout.split(separator: "\n").last!.utf8))
            as! [String: [Double]]
        return (out, try Harness.weights(out + ".safetensors"), history)
    }

    func tandemTrain(
        _ archive: String, _ m: String, epochs: Int, np: Int? = nil, extra: [String] = [], dataDir: String? = nil,
        environment: [String: String] = [:], file: StaticString = #filePath, line: UInt = #line
    ) throws -> String {
        let out = dir + "/tandem-\(m)-\(np ?? 1)-\(UUID().uuidString.prefix(6))"
        let args =
            [
                "train", "--model", archive, "--data", dataDir ?? data(m), "--out", out, "--batch-size", "8",
                "--epochs", "\(epochs)",
                "--no-shuffle", "--quiet",
            ] + extra
        let r =
            try np.map { try Harness.mpi($0, args, environment: environment) }
            ?? Harness.run(Harness.binary, args, environment: environment)
        XCTAssertEqual(r.status, 0, "\(m) np \(np ?? 1): \(r.stderr)", file: file, line: line)
        return out
    }

    /// Every tensor within `tolerance`, and the same tensor names.
    func assertClose(
        _ a: [String: [Float]], _ b: [String: [Float]], _ tolerance: Float, _ what: String,
        file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), what, file: file, line: line)
        for (name, x) in a {
            guard let y = b[name], x.count == y.count else {
                XCTFail("\(what): \(name) missing or misshapen", file: file, line: line)
                continue
            }
            let worst = zip(x, y).map { abs($0 - $1) }.max() ?? 0
            XCTAssertLessThan(worst, tolerance, "\(what): \(name)", file: file, line: line)
        }
    }

    // 10 steps of Float32 arithmetic in two libraries (XLA and OpenBLAS sum in other
    // orders; Keras clips probabilities at 1e-7): measured ≤ 1.2e-6 apart, while
    // training moved every tensor by ~1e-2.
    let tolerance: Float = 5e-6
}
