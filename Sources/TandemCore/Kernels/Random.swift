// Seeded random numbers: every rank draws the same stream from the same seed.
// xoshiro256** seeded through SplitMix64; not for cryptography.

import Foundation

/// SplitMix64's output for state `x`: (x + γ) through its finaliser. Also a
/// stateless hash (the dropout masks are keyed through it).
@inline(__always) func splitMix64(_ x: UInt64) -> UInt64 {
    var z = x &+ 0x9E37_79B9_7F4A_7C15
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

/// A small, fast, reproducible generator (xoshiro256**).
package struct SeededGenerator: RandomNumberGenerator, Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64)

    /// Streams for different purposes (init, shuffle, data) come from distinct seeds.
    package init(seed: UInt64, stream: UInt64 = 0) {
        var x = seed &+ stream &* 0x9E37_79B9_7F4A_7C15
        func splitMix(_ x: inout UInt64) -> UInt64 {
            defer { x &+= 0x9E37_79B9_7F4A_7C15 }
            return splitMix64(x)
        }
        s = (splitMix(&x), splitMix(&x), splitMix(&x), splitMix(&x))
    }

    package mutating func next() -> UInt64 {
        let result = ((s.1 &* 5) << 7 | (s.1 &* 5) >> 57) &* 9
        let t = s.1 << 17
        s.2 ^= s.0
        s.3 ^= s.1
        s.1 ^= s.2
        s.0 ^= s.3
        s.2 ^= t
        s.3 = (s.3 << 45) | (s.3 >> 19)
        return result
    }

    /// Uniform in [0, 1) with 53 random bits.
    package mutating func nextUnit() -> Double {
        Double(next() >> 11) * 0x1.0p-53
    }

    /// Uniform in [low, high).
    package mutating func uniform(_ low: Double, _ high: Double) -> Double {
        low + (high - low) * nextUnit()
    }

    /// Standard normal (Box–Muller).
    package mutating func normal() -> Double {
        var u = nextUnit()
        while u <= 0 { u = nextUnit() }
        return (-2 * Foundation.log(u)).squareRoot() * cos(2 * Double.pi * nextUnit())
    }

    /// A uniformly random integer in 0..<bound.
    package mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))  // bias is ≤ bound/2^64: negligible here
    }
}

/// The permutation of 0..<count for one epoch, drawn from (seed, epoch) alone,
/// so every rank computes the same one (docs/SPEC.md §4). Fisher–Yates.
package func epochPermutation(count: Int, seed: UInt64, epoch: Int) -> [Int32] {
    var order = (0..<count).map { Int32($0) }
    var rng = SeededGenerator(seed: seed, stream: 0x5EED_0000 &+ UInt64(epoch))
    if count > 1 {
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = rng.below(i + 1)
            order.swapAt(i, j)
        }
    }
    return order
}
