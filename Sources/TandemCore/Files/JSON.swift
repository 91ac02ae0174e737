// A JSON value that round-trips Keras's config.json faithfully: integers stay
// integers, 1.0 stays a float, true stays a boolean and object keys keep their
// order. Foundation's JSONSerialization cannot promise that on Linux (it
// writes 1.0 as 1 and reads true as the number 1), and Keras rebuilds layers
// from those types. Not a general JSON library: values are small, parsing is
// depth-limited (the input may come from anyone), and numbers are Int64 or Double.

import Foundation

public indirect enum JSONValue: Sendable, Equatable, CustomStringConvertible {
    case null
    case bool(Bool)
    case int(Int64)
    case double(Double)
    case string(String)
    case array([JSONValue])
    /// Keys in file order.
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool {
        switch (a, b) {
        case (.null, .null): return true
        case (.bool(let x), .bool(let y)): return x == y
        case (.int(let x), .int(let y)): return x == y
        case (.double(let x), .double(let y)): return x == y
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)): return x == y
        case (.object(let x), .object(let y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    // MARK: Reading values

    package subscript(key: String) -> JSONValue? {
        if case .object(let fields) = self { return fields.first { $0.0 == key }?.1 }
        return nil
    }
    package var string: String? {
        if case .string(let s) = self { return s }
        return nil
    }
    package var bool: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }
    package var array: [JSONValue]? {
        if case .array(let a) = self { return a }
        return nil
    }
    package var object: [(String, JSONValue)]? {
        if case .object(let o) = self { return o }
        return nil
    }
    package var isNull: Bool {
        if case .null = self { return true }
        return false
    }
    /// A number as Double (integers included).
    package var number: Double? {
        switch self {
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }
    /// An integer, or a float with an integral value (Keras sometimes writes 4.0 for 4).
    package var integer: Int? {
        switch self {
        case .int(let i): return Int(exactly: i)
        case .double(let d): return d.rounded() == d && abs(d) < 1e15 ? Int(d) : nil
        default: return nil
        }
    }

    /// A copy with `key` set (added at the end when absent).
    package func setting(_ key: String, to value: JSONValue) -> JSONValue {
        guard case .object(var fields) = self else { return self }
        if let i = fields.firstIndex(where: { $0.0 == key }) {
            fields[i].1 = value
        } else {
            fields.append((key, value))
        }
        return .object(fields)
    }

    // MARK: Writing

    public var description: String { serialized() }

    /// Compact JSON text. Doubles print in Swift's shortest round-trip form
    /// (always with a '.' or exponent, so Python reads a float back).
    public func serialized() -> String {
        var out = ""
        write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .int(let i): out += String(i)
        case .double(let d):
            if d.isNaN {
                out += "NaN"
            } else if d.isInfinite {
                out += d > 0 ? "Infinity" : "-Infinity"
            } else {
                var s = "\(d)"
                if !s.contains(".") && !s.contains("e") { s += ".0" }
                out += s
            }
        case .string(let s): JSONValue.writeString(s, into: &out)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += ", " }
                item.write(into: &out)
            }
            out += "]"
        case .object(let fields):
            out += "{"
            for (i, (key, value)) in fields.enumerated() {
                if i > 0 { out += ", " }
                JSONValue.writeString(key, into: &out)
                out += ": "
                value.write(into: &out)
            }
            out += "}"
        }
    }

    private static func writeString(_ s: String, into out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 {
                    out += String(format: "\\u%04x", scalar.value)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    // MARK: Parsing

    /// Parses UTF-8 JSON text (Python's NaN / Infinity accepted, as json.dumps writes them).
    /// Throws a message with the byte offset of the first problem.
    public static func parse(_ data: [UInt8], maxDepth: Int = 256) throws -> JSONValue {
        var parser = Parser(bytes: data, maxDepth: maxDepth)
        parser.skipSpace()
        let value = try parser.value(depth: 0)
        parser.skipSpace()
        guard parser.at == data.count else {
            throw JSONError(message: "unexpected text after the value", offset: parser.at)
        }
        return value
    }
}

package struct JSONError: Error, CustomStringConvertible {
    public let message: String, offset: Int
    public var description: String { "invalid JSON at byte \(offset): \(message)" }
}

private struct Parser {
    let bytes: [UInt8]
    let maxDepth: Int
    var at = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    func fail(_ message: String) -> JSONError { JSONError(message: message, offset: at) }

    mutating func skipSpace() {
        while at < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[at]) { at += 1 }
    }

    mutating func literal(_ word: String) -> Bool {
        let w = Array(word.utf8)
        guard at + w.count <= bytes.count, Array(bytes[at..<(at + w.count)]) == w else { return false }
        at += w.count
        return true
    }

    mutating func value(depth: Int) throws -> JSONValue {
        guard depth < maxDepth else { throw fail("nested deeper than \(maxDepth) levels") }
        guard at < bytes.count else { throw fail("unexpected end of text") }
        switch bytes[at] {
        case UInt8(ascii: "{"):
            at += 1
            var fields: [(String, JSONValue)] = []
            skipSpace()
            if at < bytes.count && bytes[at] == UInt8(ascii: "}") {
                at += 1
                return .object(fields)
            }
            while true {
                skipSpace()
                guard at < bytes.count, bytes[at] == UInt8(ascii: "\"") else { throw fail("expected a string key") }
                let key = try string()
                skipSpace()
                guard at < bytes.count, bytes[at] == UInt8(ascii: ":") else { throw fail("expected ':'") }
                at += 1
                skipSpace()
                fields.append((key, try value(depth: depth + 1)))
                skipSpace()
                guard at < bytes.count else { throw fail("unterminated object") }
                if bytes[at] == UInt8(ascii: ",") {
                    at += 1
                    continue
                }
                if bytes[at] == UInt8(ascii: "}") {
                    at += 1
                    return .object(fields)
                }
                throw fail("expected ',' or '}'")
            }
        case UInt8(ascii: "["):
            at += 1
            var items: [JSONValue] = []
            skipSpace()
            if at < bytes.count && bytes[at] == UInt8(ascii: "]") {
                at += 1
                return .array(items)
            }
            while true {
                skipSpace()
                items.append(try value(depth: depth + 1))
                skipSpace()
                guard at < bytes.count else { throw fail("unterminated array") }
                if bytes[at] == UInt8(ascii: ",") {
                    at += 1
                    continue
                }
                if bytes[at] == UInt8(ascii: "]") {
                    at += 1
                    return .array(items)
                }
                throw fail("expected ',' or ']'")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        default:
            if literal("null") { return .null }
            if literal("true") { return .bool(true) }
            if literal("false") { return .bool(false) }
            if literal("NaN") { return .double(.nan) }
            if literal("Infinity") { return .double(.infinity) }
            if literal("-Infinity") { return .double(-.infinity) }
            return try number()
        }
    }

    mutating func number() throws -> JSONValue {
        let start = at
        var isFloat = false
        while at < bytes.count {
            let c = bytes[at]
            if (c >= 0x30 && c <= 0x39) || c == UInt8(ascii: "-") || c == UInt8(ascii: "+") {
                at += 1
                continue
            }
            if c == UInt8(ascii: ".") || c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
                isFloat = true
                at += 1
                continue
            }
            break
        }
        guard at > start, let text = String(bytes: bytes[start..<at], encoding: .utf8) else {
            throw fail("unexpected character")
        }
        if !isFloat, let i = Int64(text) { return .int(i) }
        guard let d = Double(text) else { throw JSONError(message: "'\(text)' is not a number", offset: start) }
        return .double(d)
    }

    mutating func string() throws -> String {
        at += 1  // the opening quote
        var scalars = String.UnicodeScalarView()
        var run = [UInt8]()
        func flush() throws {
            guard !run.isEmpty else { return }
            guard let s = String(bytes: run, encoding: .utf8) else { throw fail("invalid UTF-8 in a string") }
            scalars.append(contentsOf: s.unicodeScalars)
            run.removeAll(keepingCapacity: true)
        }
        while at < bytes.count {
            let c = bytes[at]
            if c == UInt8(ascii: "\"") {
                at += 1
                try flush()
                return String(scalars)
            }
            if c == UInt8(ascii: "\\") {
                try flush()
                guard at + 1 < bytes.count else { break }
                let e = bytes[at + 1]
                at += 2
                switch e {
                case UInt8(ascii: "n"): scalars.append("\n")
                case UInt8(ascii: "t"): scalars.append("\t")
                case UInt8(ascii: "r"): scalars.append("\r")
                case UInt8(ascii: "b"): scalars.append("\u{08}")
                case UInt8(ascii: "f"): scalars.append("\u{0C}")
                case UInt8(ascii: "/"), UInt8(ascii: "\\"), UInt8(ascii: "\""): scalars.append(Unicode.Scalar(e))
                case UInt8(ascii: "u"):
                    var code = try hex4()
                    if code >= 0xD800 && code < 0xDC00, at + 1 < bytes.count, bytes[at] == UInt8(ascii: "\\"),
                        bytes[at + 1] == UInt8(ascii: "u")
                    {
                        at += 2
                        let low = try hex4()
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    }
                    guard let s = Unicode.Scalar(code) else { throw fail("invalid \\u escape") }
                    scalars.append(s)
                default: throw fail("invalid escape")
                }
                continue
            }
            if c < 0x20 { throw fail("control character in a string") }
            run.append(c)
            at += 1
        }
        throw fail("unterminated string")
    }

    mutating func hex4() throws -> UInt32 {
        guard at + 4 <= bytes.count, let s = String(bytes: bytes[at..<(at + 4)], encoding: .ascii),
            let v = UInt32(s, radix: 16)
        else {
            throw fail("invalid \\u escape")
        }
        at += 4
        return v
    }
}
