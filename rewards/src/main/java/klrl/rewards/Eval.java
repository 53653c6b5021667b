package klrl.rewards;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/** Exact (rational) and numeric (double, at given variable values) evaluation of scalar nodes. */
final class Eval {
    private Eval() {}

    /** The exact rational value, or null when the node has variables or an irrational value. */
    static Rational exact(Node n, Deadline dl) {
        dl.check();
        try {
            if (n instanceof Node.Num x) {
                return x.value();
            }
            if (n instanceof Node.Neg x) {
                return neg(exact(x.a(), dl));
            }
            if (n instanceof Node.Bin b) {
                Rational a = exact(b.a(), dl);
                Rational c = a == null ? null : exact(b.b(), dl);
                if (c == null) {
                    return null;
                }
                switch (b.op()) {
                    case '+': return a.add(c);
                    case '-': return a.sub(c);
                    case '*': return a.mul(c);
                    case '/': return c.num().signum() == 0 ? null : a.div(c);
                    case '^': return a.pow(c);
                    default: return null;
                }
            }
            if (n instanceof Node.Func f) {
                if (f.name().equals("binom") && f.arg() instanceof Node.Tuple t) {
                    return binom(exact(t.items().get(0), dl), exact(t.items().get(1), dl));
                }
                Rational a = exact(f.arg(), dl);
                if (a == null) {
                    return null;
                }
                switch (f.name()) {
                    case "sqrt": return f.index() == null ? a.sqrt() : null;
                    case "abs": return a.num().signum() < 0 ? a.negate() : a;
                    case "fact": return factorial(a);
                    default: return null;
                }
            }
            return null;
        } catch (Rational.TooLarge | ArithmeticException e) {
            return null;
        }
    }

    private static Rational factorial(Rational a) {
        if (!a.isInteger() || a.num().signum() < 0 || a.num().bitLength() > 12) {
            return null;
        }
        java.math.BigInteger r = java.math.BigInteger.ONE;
        for (int k = 2; k <= a.num().intValue(); k++) {
            r = r.multiply(java.math.BigInteger.valueOf(k));
        }
        return Rational.of(r, java.math.BigInteger.ONE);
    }

    private static Rational binom(Rational nn, Rational kk) {
        if (nn == null || kk == null || !nn.isInteger() || !kk.isInteger() || nn.num().bitLength() > 16
                || kk.num().signum() < 0 || kk.num().compareTo(nn.num()) > 0) {
            return null;
        }
        java.math.BigInteger r = java.math.BigInteger.ONE;
        int bigN = nn.num().intValue(), bigK = kk.num().intValue();
        for (int k = 1; k <= bigK; k++) {
            r = r.multiply(java.math.BigInteger.valueOf(bigN - bigK + k)).divide(java.math.BigInteger.valueOf(k));
        }
        return Rational.of(r, java.math.BigInteger.ONE);
    }

    private static Rational neg(Rational r) {
        return r == null ? null : r.negate();
    }

    /** Numeric value with variables bound; NaN where undefined. */
    static double num(Node n, Map<String, Double> vars, Deadline dl) {
        dl.check();
        if (n instanceof Node.Num x) {
            return x.value().toDouble();
        }
        if (n instanceof Node.Var v) {
            return vars.getOrDefault(v.name(), Double.NaN);
        }
        if (n instanceof Node.Const c) {
            return c.name().equals("pi") ? Math.PI : Double.POSITIVE_INFINITY;
        }
        if (n instanceof Node.Neg x) {
            return -num(x.a(), vars, dl);
        }
        if (n instanceof Node.Bin b) {
            double a = num(b.a(), vars, dl), c = num(b.b(), vars, dl);
            switch (b.op()) {
                case '+': return a + c;
                case '-': return a - c;
                case '*': return a * c;
                case '/': return a / c;
                case '^': return pow(a, c);
                default: return Double.NaN;
            }
        }
        if (n instanceof Node.Func f) {
            return func(f, vars, dl);
        }
        return Double.NaN;
    }

    private static double pow(double a, double c) {
        if (a < 0 && c != Math.rint(c)) {
            // real odd roots of negatives, e.g. (-8)^(1/3)
            double inv = 1 / c;
            if (Math.abs(inv - Math.rint(inv)) < 1e-12 && ((long) Math.rint(inv)) % 2 != 0) {
                return -Math.pow(-a, c);
            }
            return Double.NaN;
        }
        return Math.pow(a, c);
    }

    private static double func(Node.Func f, Map<String, Double> vars, Deadline dl) {
        if (f.name().equals("binom") && f.arg() instanceof Node.Tuple t) {
            double n = num(t.items().get(0), vars, dl), k = num(t.items().get(1), vars, dl);
            return Math.exp(lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1));
        }
        double x = num(f.arg(), vars, dl);
        return switch (f.name()) {
            case "sqrt" -> f.index() == null ? Math.sqrt(x) : pow(x, 1 / num(f.index(), vars, dl));
            case "abs" -> Math.abs(x);
            case "sin" -> Math.sin(x);
            case "cos" -> Math.cos(x);
            case "tan" -> Math.tan(x);
            case "sec" -> 1 / Math.cos(x);
            case "csc" -> 1 / Math.sin(x);
            case "cot" -> 1 / Math.tan(x);
            case "arcsin" -> Math.asin(x);
            case "arccos" -> Math.acos(x);
            case "arctan" -> Math.atan(x);
            case "sinh" -> Math.sinh(x);
            case "cosh" -> Math.cosh(x);
            case "tanh" -> Math.tanh(x);
            case "ln" -> Math.log(x);
            case "log" -> f.index() == null ? Math.log10(x) : Math.log(x) / Math.log(num(f.index(), vars, dl));
            case "exp" -> Math.exp(x);
            case "fact" -> x >= 0 && x == Math.rint(x) ? Math.exp(lgamma(x + 1)) : Double.NaN;
            default -> Double.NaN;
        };
    }

    /** Lanczos log-gamma, enough for factorials and binomials of answers. */
    static double lgamma(double x) {
        double[] c = {76.18009172947146, -86.50532032941677, 24.01409824083091, -1.231739572450155,
            0.1208650973866179e-2, -0.5395239384953e-5};
        double y = x, tmp = x + 5.5;
        tmp -= (x + 0.5) * Math.log(tmp);
        double ser = 1.000000000190015;
        for (double v : c) {
            ser += v / ++y;
        }
        return -tmp + Math.log(2.5066282746310005 * ser / x);
    }

    static void vars(Node n, TreeSet<String> out) {
        if (n instanceof Node.Var v) {
            out.add(v.name());
        } else if (n instanceof Node.Neg x) {
            vars(x.a(), out);
        } else if (n instanceof Node.Bin b) {
            vars(b.a(), out);
            vars(b.b(), out);
        } else if (n instanceof Node.Pm p) {
            vars(p.a(), out);
            vars(p.b(), out);
        } else if (n instanceof Node.Func f) {
            vars(f.arg(), out);
            if (f.index() != null) {
                vars(f.index(), out);
            }
        } else if (n instanceof Node.Tuple t) {
            t.items().forEach(x -> vars(x, out));
        }
    }

    /** Expands every ± into both signs (at most 16 variants). */
    static List<Node> expandPm(Node n) {
        List<Node> out = new ArrayList<>();
        if (n instanceof Node.Pm p) {
            for (Node a : expandPm(p.a())) {
                for (Node b : expandPm(p.b())) {
                    out.add(new Node.Bin('+', a, b));
                    out.add(new Node.Bin('-', a, b));
                }
            }
        } else if (n instanceof Node.Bin b) {
            for (Node a : expandPm(b.a())) {
                for (Node c : expandPm(b.b())) {
                    out.add(new Node.Bin(b.op(), a, c));
                }
            }
        } else if (n instanceof Node.Neg x) {
            expandPm(x.a()).forEach(a -> out.add(new Node.Neg(a)));
        } else if (n instanceof Node.Func f) {
            expandPm(f.arg()).forEach(a -> out.add(new Node.Func(f.name(), a, f.index())));
        } else {
            out.add(n);
        }
        return out.size() > 16 ? out.subList(0, 16) : out;
    }

    static boolean hasPm(Node n) {
        if (n instanceof Node.Pm) {
            return true;
        }
        if (n instanceof Node.Bin b) {
            return hasPm(b.a()) || hasPm(b.b());
        }
        if (n instanceof Node.Neg x) {
            return hasPm(x.a());
        }
        if (n instanceof Node.Func f) {
            return hasPm(f.arg());
        }
        return false;
    }
}
