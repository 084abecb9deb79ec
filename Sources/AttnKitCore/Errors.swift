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
