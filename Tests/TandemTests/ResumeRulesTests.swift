// A resumed run's flags against its checkpoint (ResumeRules.swift): each setting that defines
// the run may be restated, not changed, and the checkpoint's metadata keeps the JSON keys
// checkpoints have always had (RunConfiguration's fields beside the state's).

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ResumeRulesTests: XCTestCase {
    private func metadata() -> CheckpointMetadata {
        var c = RunConfiguration(
            headline: tinyConfig(), modelConfig: nil, optimizer: OptimizerConfig(kind: .adam), batchSize: 8,
            samples: 37,
            seed: 3, shuffle: true)
        c.microBatch = 4
        c.labeledReduction = ["aux_output"]
        c.gradientSurgery = "pcgrad"
        var position = TrainingPosition()
        position.step = 5
        var monitor = MonitorState()
        monitor.expression = "val_loss"
        position.monitor = monitor
        return CheckpointMetadata(configuration: c, position: position, worldSize: 2)
    }

    private func refusal(_ edit: (inout ResumeRequest) -> Void) -> String? {
        var r = ResumeRequest()
        edit(&r)
        do {
            try metadata().checkResume(r, checkpoint: "run/checkpoint.safetensors")
            return nil
        } catch { return "\(error)" }
    }

    func testRestatingIsAcceptedAndChangingIsRefusedByName() {
        XCTAssertNil(refusal { _ in }, "nothing given")
        XCTAssertNil(
            refusal {
                $0.batchSize = 8
                $0.seed = 3
                $0.reproducibleMicroBatch = 4
                $0.gradientSurgery = "pcgrad"
            })
        XCTAssertNil(refusal { $0.headReductions = [("aux_output", true), ("main_output", false)] })
        XCTAssertNil(
            refusal {
                $0.sizes = tinyConfig()
                $0.monitor = "val_loss"
            })
        let cases: [(String, (inout ResumeRequest) -> Void)] = [
            (
                "--resume: --batch-size 16 contradicts the checkpoint's 8 (run/checkpoint.safetensors)",
                { $0.batchSize = 16 }
            ),
            ("--seed 4 contradicts the checkpoint's 3", { $0.seed = 4 }),
            ("--no-shuffle on contradicts the checkpoint's a shuffled run", { $0.noShuffle = true }),
            (
                "--reproducible --micro-batch 2 contradicts the checkpoint's micro-batch 4",
                { $0.reproducibleMicroBatch = 2 }
            ),
            (
                "--head-reduction aux_output=batch contradicts the checkpoint's labeled",
                {
                    $0.headReductions = [("aux_output", false)]
                }
            ),
            ("--gradient-surgery none contradicts the checkpoint's pcgrad", { $0.gradientSurgery = "none" }),
            (
                "--loss-weight-schedule contradicts the checkpoint's schedules",
                {
                    $0.lossWeightSchedules = ["aux_output": try! LossWeightSchedule.parse("constant:0.5")]
                }
            ),
            (
                "--loss-weighting uncertainty contradicts the checkpoint's constant weights",
                { $0.lossWeighting = .uncertainty }
            ),
            (
                "--monitor 'val_aux_output_loss' contradicts the checkpoint's 'val_loss'",
                { $0.monitor = "val_aux_output_loss" }
            ),
            (
                "--optimizer --lr contradicts the checkpoint's optimizer (adam)",
                {
                    $0.optimizerFlags = ["--optimizer", "--lr"]
                    $0.optimizer = OptimizerConfig(kind: .adam, learningRate: 0.5)
                }
            ),
        ]
        for (expected, edit) in cases {
            let message = refusal(edit)
            XCTAssertTrue(message?.contains(expected) == true, "\(expected): \(message ?? "accepted")")
        }
        var wider = tinyConfig()
        wider.embeddingDimension += 1
        XCTAssertTrue(refusal { $0.sizes = wider }?.contains("the size flags give") == true)
    }

    func testMetadataKeepsTheKeysCheckpointsHaveAlwaysWritten() throws {
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(metadata())) as! [String: Any]
        for key in [
            "position", "seed", "model", "optimizer", "batchSize", "samples", "worldSize", "shuffle", "microBatch",
            "labeledReduction", "gradientSurgery",
        ] {
            XCTAssertNotNil(json[key], key)
        }
        XCTAssertNil(json["configuration"], "the configuration's fields sit at the top level")
        let back = try JSONDecoder().decode(CheckpointMetadata.self, from: JSONEncoder().encode(metadata()))
        XCTAssertEqual(back.configuration, metadata().configuration)
        XCTAssertEqual(back.position, metadata().position)
    }
}
