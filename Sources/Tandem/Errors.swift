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
        case let .usage(message): return message
        case let .file(path, problem): return "\(path): \(problem)"
        case let .training(message): return message
        }
    }
}
