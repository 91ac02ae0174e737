// Part of what KernelTests.swift's header describes.

import CKernels
import Foundation
import XCTest

@testable import TandemCore
@testable import TandemKeras
@testable import TandemTraining

final class FastMathTests: XCTestCase {
    func testFastTanhIsWithinAFewUlps() {
        var worst = 0.0
        var x: Float = -12
        while x < 12 {
            let exact = Foundation.tanh(Double(x))
            let got = Double(fastTanh(x))
            worst = max(worst, abs(got - exact) / max(abs(exact), 1e-30))
            x += 0.00037
        }
        // 1e-6 relative ≈ 8 Float32 ulps: far below what training or the gradient checks notice.
        XCTAssertLessThan(worst, 1e-6)
        XCTAssertEqual(fastTanh(0), 0)
        XCTAssertEqual(fastTanh(100), 1)
        XCTAssertEqual(fastTanh(-100), -1)
    }
}
