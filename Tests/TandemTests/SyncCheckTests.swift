// Part of what ShardingTests.swift's header describes.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class SyncCheckTests: XCTestCase {
    func testHashMismatchNamesTheRanksAndTheFirstTensor() {
        let messages = LockedArray(3)
        let texts = LockedText()
        ThreadGroup.run(size: 3) { rank, comm in
            let heads = [
                Head(output: "main_output", loss: .binaryCrossentropy, weight: 1),
                Head(output: "aux_output", loss: .binaryCrossentropy, weight: 0.2),
            ]
            let (step, data, _) = try! tinyHeadline(heads: heads, l2: [:], batch: 3, communicator: comm)
            let trainer = Trainer(
                step: step, data: data, trainRows: 0..<data.count, validation: nil, options: TrainingOptions())
            do { try trainer.checkParametersAgree(when: "at start") } catch {
                XCTFail("identical parameters pass: \(error)")
            }
            if rank == 1 {  // one flipped bit in lstm/bias on rank 1 only
                let v = step.model.parameters.view("lstm/bias")!
                step.model.parameters.value(v)[2] = step.model.parameters.value(v)[2].nextUp
            }
            do {
                try trainer.checkParametersAgree(when: "after step 3")
                messages.set(rank, [0])
            } catch let e as AgreedError {
                messages.set(rank, [e.reporter ? 1 : 2])
                if e.reporter { texts.set(e.message) }
            } catch { XCTFail("\(error)") }
        }
        XCTAssertEqual(messages.values, [[1], [2], [2]], "every rank stops; rank 0 reports")
        XCTAssertEqual(
            texts.value,
            "parameters are no longer identical across ranks after step 3: rank 1 differs from rank 0, first in 'lstm/bias'"
        )
    }
}
