// Two steps of the optimizers Keras 3.15 added beyond Adam's family — Lamb, Adafactor, Muon,
// ScheduleFreeAdamW — and LossScaleOptimizer's counters, against numbers computed by hand
// (float64 numpy, outside Tandem) from keras/src/optimizers/*.py:
//   w0 = [0.5, −1.25, 2.0], g1 = [0.1, −0.4, 3.0], g2 = [−0.2, 0.05, 1.5];
//   the matrix W0 = [[0.5, −1.25, 2.0], [0.3, 0.8, −0.6]] with G1 = [[0.1, −0.4, 3.0], [0.2, −0.1, 0.5]],
//   G2 = [[−0.2, 0.05, 1.5], [0.4, 0.3, −0.7]] (and their transposes) for the rules that see shapes.

import XCTest

@testable import TandemCore
@testable import TandemKeras

final class TensorOptimizerTests: XCTestCase {
    private let vector: (w: [Float], g: [[Float]]) = ([0.5, -1.25, 2.0], [[0.1, -0.4, 3.0], [-0.2, 0.05, 1.5]])
    private let matrix: (w: [Float], g: [[Float]]) = (
        [0.5, -1.25, 2.0, 0.3, 0.8, -0.6], [[0.1, -0.4, 3.0, 0.2, -0.1, 0.5], [-0.2, 0.05, 1.5, 0.4, 0.3, -0.7]]
    )

    /// Two steps on one tensor of `shape` named `name`; the weights after each.
    private func twoSteps(
        _ config: OptimizerConfig, _ data: (w: [Float], g: [[Float]]), shape: [Int], name: String = "dense/kernel"
    ) -> (steps: [[Float]], optimizer: Optimizer) {
        let n = data.w.count
        let w = UnsafeMutablePointer<Float>.allocate(capacity: n)
        defer { w.deallocate() }
        w.initialize(from: data.w, count: n)
        let optimizer = Optimizer(config, parameterCount: n, tensors: [(0, n, true)], shapes: [shape], names: [name])
        var out: [[Float]] = []
        for g in data.g {
            var gm = g
            optimizer.step(parameters: w, gradients: &gm)
            out.append(Array(UnsafeBufferPointer(start: w, count: n)))
        }
        return (out, optimizer)
    }

    private func check(
        _ config: OptimizerConfig, _ data: (w: [Float], g: [[Float]]), shape: [Int], name: String = "dense/kernel",
        _ expected: [[Double]], file: StaticString = #filePath, line: UInt = #line
    ) {
        let got = twoSteps(config, data, shape: shape, name: name).steps
        for s in 0..<2 {
            assertClose(got[s], expected[s], atol: 1e-6, rtol: 3e-6, "step \(s + 1)", file: file, line: line)
        }
    }

    private func config(_ kind: OptimizerConfig.Kind, _ lr: Double) -> OptimizerConfig {
        OptimizerConfig(kind: kind, learningRate: lr)
    }

    /// Transposes a [2, 3] row-major matrix to [3, 2].
    private func transposed(_ x: [Float]) -> [Float] { [x[0], x[3], x[1], x[4], x[2], x[5]] }

    func testLambScalesAdamsStepByTheTrustRatio() {
        check(
            config(.lamb, 0.01), vector, shape: [3],
            [[0.486080597, -1.23608059, 1.98608058], [0.493663187, -1.22422248, 1.96677364]])
    }

    func testAdafactorFactorsTheLastTwoAxesAndNotAVector() {
        check(
            config(.adafactor, 0.5), vector, shape: [3],
            [[-0.195970545, -0.554029455, 1.30402945], [0.304465083, -0.632318047, 1.03039621]])
        check(
            config(.adafactor, 0.5), matrix, shape: [2, 3],
            [
                [0.391267618, -1.01412635, 1.76017509, -0.902300252, 1.12601943, -0.820987181],
                [0.554336565, -1.05659054, 1.56794098, -1.90456586, 0.343030341, -0.545298586],
            ])
    }

    func testMuonOrthogonalisesMatricesAndRunsAdamWElsewhere() {
        let expected: [[Double]] = [
            [0.504467542, -1.2472954, 1.97521022, 0.266356813, 0.806004209, -0.601559946],
            [0.500548492, -1.24813104, 1.94951931, 0.234279773, 0.789817218, -0.600474413],
        ]
        check(config(.muon, 0.1), matrix, shape: [2, 3], expected)
        // Taller than wide: Keras works on the transpose; the result is the transpose of the above.
        let tall = (w: transposed(matrix.w), g: matrix.g.map(transposed))
        check(
            config(.muon, 0.1), tall, shape: [3, 2], expected.map { transposed($0.map(Float.init)).map(Double.init) })
        // A vector, an embedding's matrix and a matrix an exclude_layers pattern finds take AdamW (decay 0.004).
        let adamW: [[Double]] = [[0.399803162, -1.14950079, 1.89920011], [0.436253076, -1.09178798, 1.80522255]]
        check(config(.muon, 0.1), vector, shape: [3], adamW)
        check(config(.muon, 0.1), (vector.w, vector.g), shape: [1, 3], name: "token_embedding/embeddings", adamW)
        var excluding = config(.muon, 0.1)
        excluding.excludeLayers = ["^aux"]
        check(excluding, (vector.w, vector.g), shape: [3, 1], name: "aux/kernel", adamW)
        XCTAssertFalse(excluding.muonUsesAdam(shape: [3, 1], name: "main/kernel"))
        // Muon keeps a velocity for its AdamW tensors only, in Keras's archive order.
        let slots = ModelDescription.kerasSlotVariables(
            config(.muon, 0.1),
            variables: [("embedding/embeddings", [5, 2]), ("dense/kernel", [2, 4]), ("dense/bias", [4])])
        XCTAssertEqual(
            slots.map { "\($0.slot) \($0.tensor)" },
            [
                "momentum embedding/embeddings", "velocity embedding/embeddings", "momentum dense/kernel",
                "momentum dense/bias", "velocity dense/bias",
            ])
    }

    func testScheduleFreeStartsItsMomentumAtTheWeightsAndWarmsUp() {
        var c = config(.scheduleFreeAdamW, 0.1)
        c.warmupSteps = 2
        XCTAssertEqual(c.epsilon, 1e-8)
        let run = twoSteps(c, vector, shape: [3])
        assertClose(run.steps[0], [0.45, -1.2, 1.95], atol: 1e-6, rtol: 3e-6, "step 1")
        assertClose(run.steps[1], [0.519559671, -1.20964998, 1.91520972], atol: 1e-6, rtol: 3e-6, "step 2")
        XCTAssertEqual(OptimizerConfig(kind: .scheduleFreeAdamW).learningRate, 0.0025)
    }

    func testAdafactorArchiveSlotsHaveKerasShapesAndPlaceholders() {
        let slots = ModelDescription.kerasSlotVariables(
            config(.adafactor, 0.1), variables: [("conv/kernel", [3, 4, 5]), ("conv/bias", [5])])
        XCTAssertEqual(slots.map(\.shape), [[3, 4], [3, 5], [3, 4, 5], [], [], [5]])
        XCTAssertEqual(slots.map(\.placeholder), [false, false, false, true, true, false])
    }

    func testLossScaleIsANoOpWhoseScaleDoublesEveryGrowthInterval() {
        var c = config(.adam, 0.01)
        c.lossScale = OptimizerConfig.LossScale()
        c.lossScale!.growthSteps = 2
        let scaled = twoSteps(c, vector, shape: [3])
        XCTAssertEqual(scaled.steps, twoSteps(config(.adam, 0.01), vector, shape: [3]).steps)
        // Keras: step 1 counts to 1; step 2 finds the count at growth − 1, doubles the scale, restarts the count.
        XCTAssertEqual(scaled.optimizer.lossScale, 65536)
        XCTAssertEqual(scaled.optimizer.lossScaleCounter, 0)
        c.lossScale!.growthSteps = 0
        XCTAssertThrowsError(try c.validate())
    }

    func testKerasConfigsReadAndWriteBack() throws {
        let text = """
            {"module": "keras.optimizers", "class_name": "LossScaleOptimizer", "config": {"name": "loss_scale_optimizer",
             "inner_optimizer": {"module": "keras.optimizers", "class_name": "Muon", "config": {"name": "muon",
               "learning_rate": 0.02, "weight_decay": 0.01, "exclude_layers": ["^aux"], "ns_steps": 4,
               "rms_rate": null, "adam_weight_decay": null, "nesterov": false}},
             "initial_scale": 1024.0, "dynamic_growth_steps": 7}}
            """
        let o = try KerasCompile.optimizer(try JSONValue.parse(Array(text.utf8)))
        XCTAssertEqual(o.kind, .muon)
        XCTAssertEqual(o.lossScale?.initialScale, 1024)
        XCTAssertEqual(o.lossScale?.growthSteps, 7)
        XCTAssertEqual(o.excludeLayers, ["^aux"])
        XCTAssertEqual(o.newtonSchulzSteps, 4)
        XCTAssertNil(o.rmsRate)
        XCTAssertNil(o.adamWeightDecay)
        XCTAssertFalse(o.nesterov)
        XCTAssertEqual(o.weightDecay, 0.01)
        let decoded = try JSONDecoder().decode(OptimizerConfig.self, from: try JSONEncoder().encode(o))
        XCTAssertEqual(decoded, o)
        XCTAssertThrowsError(
            try KerasCompile.optimizer(
                try JSONValue.parse(Array(#"{"class_name": "MultiOptimizer", "config": {}}"#.utf8)))
        ) { error in XCTAssertTrue("\(error)".contains("MultiOptimizer gives each variable its own optimizer")) }
    }
}
