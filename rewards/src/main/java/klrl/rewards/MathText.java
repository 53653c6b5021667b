package klrl.rewards;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.List;
import java.util.stream.Collectors;

/**
 * A parsed answer as a person writes it in plain text: {@code 1/2}, {@code x^2 + 1}, {@code 2sqrt(3)},
 * {@code {1, 2}}, {@code [0, inf)}, with parentheses only where the reading would change without them.
 * For showing how the verifier read an answer; nothing parses this text back.
 */
final class MathText {
    private MathText() {}

    // binding strength, loosest first: a bare list, a union, a relation, a sum, a product, a leading minus,
    // a power, a factorial, and what never needs parentheses
    private static final int LIST = 0, UNION = 1, REL = 2, SUM = 3, PRODUCT = 4, NEG = 5, POWER = 6, POSTFIX = 7, ATOM = 8;

    static String of(Node n) {
        return print(n);
    }

    private static String print(Node n) {
        if (n instanceof Node.Num x) {
            return number(x.value());
        }
        if (n instanceof Node.Var v) {
            return variable(v.name());
        }
        if (n instanceof Node.Const c) {
            return c.name();
        }
        if (n instanceof Node.Neg g) {
            // -(1/2) reads as -1/2: the sign of a product or quotient goes with its first factor
            return "-" + (g.a() instanceof Node.Neg || g.a() instanceof Node.Pm ? paren(g.a()) : at(g.a(), PRODUCT));
        }
        if (n instanceof Node.Pm p) {
            boolean unary = p.a() instanceof Node.Num z && z.value().num().signum() == 0;
            return (unary ? "" : at(p.a(), SUM) + " ") + "±" + (unary ? "" : " ") + right(p.b(), SUM);
        }
        if (n instanceof Node.Bin b) {
            return switch (b.op()) {
                case '+', '-' -> at(b.a(), SUM) + " " + b.op() + " " + right(b.b(), SUM);
                case '*' -> {
                    String r = right(b.b(), PRODUCT); // printed once: nested products stay linear in size
                    yield at(b.a(), PRODUCT) + (juxtaposed(b.a(), b.b(), r) ? "" : "*") + r;
                }
                case '/' -> at(b.a(), PRODUCT) + "/" + right(b.b(), PRODUCT);
                case '^' -> at(b.a(), ATOM) + "^" + at(b.b(), ATOM);
                default -> at(b.a(), ATOM) + " " + b.op() + " " + at(b.b(), ATOM);
            };
        }
        if (n instanceof Node.Func f) {
            return function(f);
        }
        if (n instanceof Node.Tuple t) {
            return "(" + items(t.items()) + ")";
        }
        if (n instanceof Node.SetOf s) {
            return s.bare() ? items(s.items()) : "{" + items(s.items()) + "}";
        }
        if (n instanceof Node.Interval i) {
            return (i.loClosed() ? "[" : "(") + print(i.lo()) + ", " + print(i.hi()) + (i.hiClosed() ? "]" : ")");
        }
        if (n instanceof Node.Union u) {
            return u.parts().stream().map(p -> at(p, UNION + 1)).collect(Collectors.joining(" ∪ "));
        }
        if (n instanceof Node.Rel r) {
            StringBuilder sb = new StringBuilder(at(r.terms().get(0), SUM));
            for (int k = 0; k < r.ops().size(); k++) {
                sb.append(' ').append(r.ops().get(k)).append(' ').append(at(r.terms().get(k + 1), SUM));
            }
            return sb.toString();
        }
        if (n instanceof Node.Matrix m) {
            return m.rows().stream().map(r -> "[" + items(r) + "]").collect(Collectors.joining(", ", "[", "]"));
        }
        return ((Node.Text) n).text();
    }

    /** n where at least {@code min} binds: in parentheses when it binds more loosely. */
    private static String at(Node n, int min) {
        if (precedence(n) >= min) {
            return print(n);
        }
        // a bare list inside an expression: braces, since it is unordered
        return n instanceof Node.SetOf s && s.bare() ? "{" + items(s.items()) + "}" : paren(n);
    }

    /**
     * The right operand of a left-associative operator: parenthesised unless it binds more tightly
     * (a - (b - c), a/(b*c)), and always when it starts with a sign (a + (-b)).
     */
    private static String right(Node n, int op) {
        return n instanceof Node.Neg || n instanceof Node.Pm ? paren(n) : at(n, op + 1);
    }

    private static String paren(Node n) {
        return "(" + print(n) + ")";
    }

    private static int precedence(Node n) {
        if (n instanceof Node.Num x) {
            return x.value().num().signum() < 0 ? NEG : x.value().isInteger() || terminates(x.value()) ? ATOM : PRODUCT;
        }
        if (n instanceof Node.Neg) {
            return NEG;
        }
        if (n instanceof Node.Pm) {
            return SUM;
        }
        if (n instanceof Node.Bin b) {
            return switch (b.op()) {
                case '+', '-' -> SUM;
                case '*', '/' -> PRODUCT;
                case '^' -> POWER;
                default -> ATOM;
            };
        }
        if (n instanceof Node.Func f) {
            return f.name().equals("fact") ? POSTFIX : ATOM;
        }
        if (n instanceof Node.SetOf s) {
            return s.bare() ? LIST : ATOM;
        }
        if (n instanceof Node.Union) {
            return UNION;
        }
        if (n instanceof Node.Rel) {
            return REL;
        }
        return ATOM;
    }

    /**
     * 2x, 3sqrt(2), 2pi, -4(x + 1), (a - b)(a + b): a number, a negated one or a bracketed sum before a
     * name, a function or a bracket, as written by hand; 2*3, 2*e (2e would read as an exponent),
     * 2*(1, 2) keep the sign. {@code r} is b as printed.
     */
    private static boolean juxtaposed(Node a, Node b, String r) {
        if (b instanceof Node.Tuple || b instanceof Node.Interval) {
            return false;
        }
        boolean bracketed = r.startsWith("(") && !r.startsWith("(-") && !r.startsWith("(±");
        if (precedence(a) < PRODUCT) {
            return bracketed; // a sum before a bracket: (a - b)(a + b)
        }
        Node lead = a instanceof Node.Neg g ? g.a() : a;
        if (!(lead instanceof Node.Num x) || x.value().num().signum() < 0 || precedence(lead) != ATOM) {
            return false;
        }
        char c = r.charAt(0);
        return Character.isLetter(c) && c != 'e' && c != 'E' || bracketed;
    }

    private static String function(Node.Func f) {
        return switch (f.name()) {
            case "abs" -> "|" + print(f.arg()) + "|";
            case "fact" -> at(f.arg(), ATOM) + "!";
            case "sqrt" -> f.index() == null ? "sqrt(" + print(f.arg()) + ")" : "sqrt[" + print(f.index()) + "](" + print(f.arg()) + ")";
            case "binom" -> "binom" + (f.arg() instanceof Node.Tuple ? print(f.arg()) : paren(f.arg()));
            case "log" -> "log" + (f.index() == null ? "" : "_" + at(f.index(), ATOM)) + "(" + print(f.arg()) + ")";
            default -> f.name() + "(" + print(f.arg()) + ")";
        };
    }

    private static String items(List<Node> items) {
        return items.stream().map(MathText::print).collect(Collectors.joining(", "));
    }

    /** x, x_1, alpha, a_{n+1}: a Greek letter without its backslash, a longer subscript in braces. */
    private static String variable(String name) {
        String s = name.startsWith("\\") ? name.substring(1) : name;
        int u = s.indexOf('_');
        return u < 0 || s.length() - u - 1 <= 1 ? s : s.substring(0, u) + "_{" + s.substring(u + 1) + "}";
    }

    /** An integer, a decimal when the value has a finite one (how decimals are written), else p/q. */
    private static String number(Rational r) {
        if (r.isInteger()) {
            return r.num().toString();
        }
        if (terminates(r)) {
            return new BigDecimal(r.num()).divide(new BigDecimal(r.den())).stripTrailingZeros().toPlainString();
        }
        return r.num() + "/" + r.den();
    }

    /** Whether the denominator has no prime factor but 2 and 5. */
    private static boolean terminates(Rational r) {
        BigInteger d = r.den().shiftRight(r.den().getLowestSetBit());
        BigInteger five = BigInteger.valueOf(5);
        while (d.mod(five).signum() == 0) {
            d = d.divide(five);
        }
        return d.equals(BigInteger.ONE);
    }
}
