// Sharding and step equivalence on the in-process (threads) communicator:
// every sample once per epoch, contiguous slices differing by at most one,
// the global-B scaling, and N ranks matching one process.

import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class ShardingTests: XCTestCase {
    func testSlicesAreContiguousBalancedAndCoverEverySampleOnce() {
        for count in [0, 1, 2, 5, 7, 32, 33] {
            for size in 1...5 {
                let slices = (0..<size).map { shard(count: count, rank: $0, size: size) }
                XCTAssertEqual(slices.first?.lowerBound, 0)
                XCTAssertEqual(slices.last?.upperBound, count)
                for r in 1..<size {
                    XCTAssertEqual(slices[r - 1].upperBound, slices[r].lowerBound, "contiguous, rank order")
                }
                let sizes = slices.map(\.count)
                XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1, "count \(count) size \(size)")
            }
        }
    }

    func testEveryEpochVisitsEverySampleExactlyOnceAcrossRanks() {
        let n = 23
        let batch = 6
        let size = 4
        let order = epochPermutation(count: n, seed: 9, epoch: 3)
        var seen: [Int32] = []
        for k in 0..<((n + batch - 1) / batch) {
            let global = Array(order[(k * batch)..<min((k + 1) * batch, n)])
            for r in 0..<size { seen += global[shard(count: global.count, rank: r, size: size)] }
        }
        XCTAssertEqual(seen.sorted(), (0..<n).map(Int32.init))
    }
}
