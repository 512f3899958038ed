import Testing

@testable import Eval
