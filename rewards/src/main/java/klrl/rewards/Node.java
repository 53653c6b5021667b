package klrl.rewards;

import java.util.List;

/** A parsed answer: numbers and expressions, and the structures answers come in. */
sealed interface Node {
    /** A number literal, exact. */
    record Num(Rational value) implements Node {}

    /** A variable, e.g. x or x_1. */
    record Var(String name) implements Node {}

    /** A named constant: pi, inf. */
    record Const(String name) implements Node {}

    /** op in + - * / ^ . */
    record Bin(char op, Node a, Node b) implements Node {}

    record Neg(Node a) implements Node {}

    /** a ± b: expands to two answers. */
    record Pm(Node a, Node b) implements Node {}

    /** sqrt, cbrt-like roots (index), sin, cos, tan, sec, csc, cot, arcsin, arccos, arctan, ln, log (base arg), exp, abs, fact. */
    record Func(String name, Node arg, Node index) implements Node {}

    /** (a, b, …): ordered. */
    record Tuple(List<Node> items) implements Node {}

    /** {a, b, …} or a bare "a, b": unordered. bare = written without braces. */
    record SetOf(List<Node> items, boolean bare) implements Node {}

    /** An interval with open/closed ends. */
    record Interval(Node lo, Node hi, boolean loClosed, boolean hiClosed) implements Node {}

    /** A union of intervals (or sets). */
    record Union(List<Node> parts) implements Node {}

    /** A chain of relations a op1 b op2 c …, ops in = < > <= >= != . */
    record Rel(List<Node> terms, List<String> ops) implements Node {}

    record Matrix(List<List<Node>> rows) implements Node {}

    /** A text answer (words), compared case- and space-insensitively. */
    record Text(String text) implements Node {}
}
