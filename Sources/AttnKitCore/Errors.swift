/// What went wrong, with the argument it concerns and the rule it broke.
///
/// The core throws these; the C ABI layer maps each case to a stable status code.
public enum AttnError: Error, Equatable, CustomStringConvertible {
    /// A rank, shape or stride does not satisfy the rule.
    case shape(argument: String, rule: String)
    /// A scalar argument is out of range.
    case invalidArgument(argument: String, rule: String)
    /// A dtype is unsupported or mismatched.
    case dtype(argument: String, rule: String)
    /// A size or offset computation overflows Int.
    case overflow(argument: String, rule: String)
    /// A workspace allocation of `bytes` bytes failed.
    case outOfMemory(bytes: Int)

    /// The same error with tensor names replaced, for entry points that check
    /// their arguments through a shared planner under other names: a name is
    /// replaced where it is the whole argument or its prefix before "." or "["
    /// (`q`, `q.shape[2]`, `q.strides[0]`), in the argument and in the rule.
    public func renamingTensors(_ names: [String: String]) -> AttnError {
        func rename(_ text: String) -> String {
            var result = ""
            var word = ""
            func flush(_ next: Character?) {
                if let replacement = names[word], next == nil || next == "." || next == "[" || next == " " || next == ")"
                    || next == "," {
                    result += replacement
                } else {
                    result += word
                }
                word = ""
            }
            for character in text {
                if character.isLetter || character.isNumber || character == "_" {
                    word.append(character)
                } else {
                    flush(character)
                    result.append(character)
                }
            }
            flush(nil)
            return result
        }
        switch self {
        case let .shape(argument, rule): return .shape(argument: rename(argument), rule: rename(rule))
        case let .invalidArgument(argument, rule): return .invalidArgument(argument: rename(argument), rule: rename(rule))
        case let .dtype(argument, rule): return .dtype(argument: rename(argument), rule: rename(rule))
        case let .overflow(argument, rule): return .overflow(argument: rename(argument), rule: rename(rule))
        case .outOfMemory: return self
        }
    }

    public var description: String {
        switch self {
        case let .shape(argument, rule), let .invalidArgument(argument, rule),
             let .dtype(argument, rule), let .overflow(argument, rule):
            return "\(argument) \(rule)"
        case let .outOfMemory(bytes):
            return "could not allocate \(bytes) bytes of workspace"
        }
    }
}
