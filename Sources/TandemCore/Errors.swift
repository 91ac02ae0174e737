// The one error type users see: a sentence naming the file or flag and what is wrong.

/// A user-facing failure. `description` is the whole message.
public enum TandemError: Error, CustomStringConvertible, Equatable {
    /// A bad flag or flag combination.
    case usage(String)
    /// A file that is missing, unreadable or malformed: path and problem.
    case file(String, String)
    /// Training could not continue (non-finite loss, rank mismatch, …).
    case training(String)

    public var description: String {
        switch self {
        case .usage(let message): return message
        case .file(let path, let problem): return "\(path): \(problem)"
        case .training(let message): return message
        }
    }
}

/// The product of `dimensions`, or nil when it overflows (corrupt headers can ask for anything).
package func checkedProduct(_ dimensions: [Int]) -> Int? {
    var result = 1
    for d in dimensions {
        guard d >= 0 else { return nil }
        let (p, overflow) = result.multipliedReportingOverflow(by: d)
        if overflow { return nil }
        result = p
    }
    return result
}
