package klrl.rewards;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;

/**
 * Whether two parsed answers are the same mathematical object.
 *
 * <ul>
 *   <li>Numbers: exact rational equality when both are rational (1/2 = 0.5 = \frac{1}{2}, but 0.33 ≠ 1/3);
 *       otherwise relative difference ≤ 1e-9 (2\sqrt3 = \sqrt{12}; 3.14 ≠ \pi).
 *   <li>Expressions with variables: equal values at 8 seeded random points in [0.5, 2.5] (at least 3
 *       where both are defined). This is polynomial-identity testing, which decides (x+1)^2 = x^2+2x+1
 *       without a symbolic simplifier.
 *   <li>Tuples and matrices: ordered, element-wise. Sets and bare lists ("2, 3"): unordered.
 *   <li>Intervals: both ends and both closednesses; an open interval equals the same pair written as a tuple.
 *   <li>Relations: "x = 3" equals "3" (a lone variable on one side, as Math-Verify); two equations are equal
 *       when lhs − rhs are proportional; inequalities when proportional with a positive factor; an
 *       inequality in one variable equals the interval it describes.
 * </ul>
 */
final class Equivalence {
    private Equivalence() {}

    static final double REL_TOL = 1e-9;
    static final int POINTS = 8;

    static boolean equal(Node a, Node b, Deadline dl) {
        dl.check();
        a = matrixValue(expand(a));
        b = matrixValue(expand(b));
        if (a instanceof Node.Text ta || b instanceof Node.Text) {
            return a instanceof Node.Text x && b instanceof Node.Text y && x.text().equals(y.text());
        }
        // one-element sets/lists compare with scalars; {x} vs x
        if (a instanceof Node.SetOf s && s.items().size() == 1 && !(b instanceof Node.SetOf)) {
            return equal(s.items().get(0), b, dl);
        }
        if (b instanceof Node.SetOf s && s.items().size() == 1 && !(a instanceof Node.SetOf)) {
            return equal(a, s.items().get(0), dl);
        }
        if (a instanceof Node.SetOf sa && b instanceof Node.SetOf sb) {
            return unordered(sa.items(), sb.items(), dl);
        }
        if (a instanceof Node.SetOf sa && sa.bare() && b instanceof Node.Tuple tb) {
            return ordered(sa.items(), tb.items(), dl);
        }
        if (b instanceof Node.SetOf sb && sb.bare() && a instanceof Node.Tuple ta) {
            return ordered(ta.items(), sb.items(), dl);
        }
        if (a instanceof Node.Tuple ta && b instanceof Node.Tuple tb) {
            return ordered(ta.items(), tb.items(), dl);
        }
        if (a instanceof Node.Matrix ma && b instanceof Node.Matrix mb) {
            if (ma.rows().size() != mb.rows().size()) {
                return false;
            }
            for (int r = 0; r < ma.rows().size(); r++) {
                if (!ordered(ma.rows().get(r), mb.rows().get(r), dl)) {
                    return false;
                }
            }
            return true;
        }
        if (a instanceof Node.Matrix ma && b instanceof Node.Tuple tb) {
            return vectorEquals(ma, tb, dl);
        }
        if (b instanceof Node.Matrix mb && a instanceof Node.Tuple ta) {
            return vectorEquals(mb, ta, dl);
        }
        // "x = 5+5+1 = 11": a chain of equalities is its first and last terms
        a = collapseEqualities(a);
        b = collapseEqualities(b);
        // an inequality in one variable compares as the interval it describes, when the other side
        // is (or describes) an interval too; otherwise relations compare as relations
        Node ia = asInterval(a), ib = asInterval(b);
        if (ia != null && ib != null) {
            a = ia;
            b = ib;
        }
        // "-12 < x < 40" against "(-12, 40)": the open pair is the interval
        if (ia instanceof Node.Interval x && ib == null && b instanceof Node.Tuple t && a instanceof Node.Rel) {
            return openPair(x, t, dl);
        }
        if (ib instanceof Node.Interval x && ia == null && a instanceof Node.Tuple t && b instanceof Node.Rel) {
            return openPair(x, t, dl);
        }
        if (a instanceof Node.Interval x && b instanceof Node.Interval y) {
            return x.loClosed() == y.loClosed() && x.hiClosed() == y.hiClosed()
                    && scalar(x.lo(), y.lo(), dl) && scalar(x.hi(), y.hi(), dl);
        }
        if (a instanceof Node.Interval x && b instanceof Node.Tuple t) {
            return openPair(x, t, dl);
        }
        if (b instanceof Node.Interval x && a instanceof Node.Tuple t) {
            return openPair(x, t, dl);
        }
        if (a instanceof Node.Union ua && b instanceof Node.Union ub) {
            return unordered(ua.parts(), ub.parts(), dl);
        }
        if (a instanceof Node.Rel ra && b instanceof Node.Rel rb) {
            return relations(ra, rb, dl);
        }
        if (a instanceof Node.Rel ra) {
            Node rhs = loneVariableValue(ra);
            return rhs != null && equal(rhs, b, dl);
        }
        if (b instanceof Node.Rel rb) {
            Node rhs = loneVariableValue(rb);
            return rhs != null && equal(a, rhs, dl);
        }
        if (isScalar(a) && isScalar(b)) {
            return scalar(a, b, dl);
        }
        return false;
    }

    /**
     * A sum, difference, product or scalar multiple of matrices as the matrix it evaluates to (entries
     * left as expressions); anything else unchanged.
     */
    static Node matrixValue(Node n) {
        Node.Matrix m = evalMatrix(n);
        return m != null ? m : n;
    }

    private static Node.Matrix evalMatrix(Node n) {
        if (n instanceof Node.Matrix m) {
            return m;
        }
        if (n instanceof Node.Neg g) {
            Node.Matrix m = evalMatrix(g.a());
            return m == null ? null : map(m, Node.Neg::new);
        }
        if (!(n instanceof Node.Bin b) || "+-*".indexOf(b.op()) < 0) {
            return null;
        }
        Node.Matrix x = evalMatrix(b.a()), y = evalMatrix(b.b());
        if (x != null && y != null) {
            if (b.op() == '*') {
                return product(x, y);
            }
            if (x.rows().size() != y.rows().size()) {
                return null;
            }
            List<List<Node>> rows = new ArrayList<>();
            for (int r = 0; r < x.rows().size(); r++) {
                List<Node> rx = x.rows().get(r), ry = y.rows().get(r);
                if (rx.size() != ry.size()) {
                    return null;
                }
                List<Node> row = new ArrayList<>();
                for (int c = 0; c < rx.size(); c++) {
                    row.add(new Node.Bin(b.op(), rx.get(c), ry.get(c)));
                }
                rows.add(row);
            }
            return new Node.Matrix(rows);
        }
        if (b.op() == '*' && x == null && y != null && isScalar(b.a())) {
            return map(y, e -> new Node.Bin('*', b.a(), e));
        }
        if (b.op() == '*' && x != null && y == null && isScalar(b.b())) {
            return map(x, e -> new Node.Bin('*', e, b.b()));
        }
        return null;
    }

    private static Node.Matrix map(Node.Matrix m, java.util.function.UnaryOperator<Node> f) {
        List<List<Node>> rows = new ArrayList<>();
        for (List<Node> r : m.rows()) {
            rows.add(r.stream().map(f).toList());
        }
        return new Node.Matrix(rows);
    }

    private static Node.Matrix product(Node.Matrix x, Node.Matrix y) {
        int k = y.rows().size();
        if (x.rows().stream().anyMatch(r -> r.size() != k) || k == 0) {
            return null;
        }
        int cols = y.rows().get(0).size();
        if (y.rows().stream().anyMatch(r -> r.size() != cols)) {
            return null;
        }
        List<List<Node>> rows = new ArrayList<>();
        for (List<Node> rx : x.rows()) {
            List<Node> row = new ArrayList<>();
            for (int c = 0; c < cols; c++) {
                Node sum = null;
                for (int i = 0; i < k; i++) {
                    Node t = new Node.Bin('*', rx.get(i), y.rows().get(i).get(c));
                    sum = sum == null ? t : new Node.Bin('+', sum, t);
                }
                row.add(sum);
            }
            rows.add(row);
        }
        return new Node.Matrix(rows);
    }

    private static Node expand(Node n) {
        if (Eval.hasPm(n)) {
            return new Node.SetOf(new ArrayList<>(Eval.expandPm(n)), true);
        }
        return n;
    }

    static boolean isScalar(Node n) {
        return n instanceof Node.Num || n instanceof Node.Var || n instanceof Node.Const || n instanceof Node.Bin
                || n instanceof Node.Neg || n instanceof Node.Func;
    }

    private static boolean ordered(List<Node> a, List<Node> b, Deadline dl) {
        if (a.size() != b.size()) {
            return false;
        }
        for (int i = 0; i < a.size(); i++) {
            if (!equal(a.get(i), b.get(i), dl)) {
                return false;
            }
        }
        return true;
    }

    /** Multiset equality by matching each element of a to an unused equal element of b. */
    private static boolean unordered(List<Node> a, List<Node> b, Deadline dl) {
        if (a.size() != b.size()) {
            return false;
        }
        boolean[] used = new boolean[b.size()];
        outer:
        for (Node x : a) {
            for (int j = 0; j < b.size(); j++) {
                if (!used[j] && equal(x, b.get(j), dl)) {
                    used[j] = true;
                    continue outer;
                }
            }
            return false;
        }
        return true;
    }

    private static boolean vectorEquals(Node.Matrix m, Node.Tuple t, Deadline dl) {
        List<Node> flat = new ArrayList<>();
        boolean column = m.rows().stream().allMatch(r -> r.size() == 1);
        if (!column && m.rows().size() != 1) {
            return false;
        }
        m.rows().forEach(flat::addAll);
        return ordered(flat, t.items(), dl);
    }

    private static boolean openPair(Node.Interval x, Node.Tuple t, Deadline dl) {
        return !x.loClosed() && !x.hiClosed() && t.items().size() == 2
                && scalar(x.lo(), t.items().get(0), dl) && scalar(x.hi(), t.items().get(1), dl);
    }

    private static Node collapseEqualities(Node n) {
        if (n instanceof Node.Rel r && r.terms().size() > 2 && r.ops().stream().allMatch("="::equals)) {
            return new Node.Rel(List.of(r.terms().get(0), r.terms().get(r.terms().size() - 1)), List.of("="));
        }
        return n;
    }

    /**
     * For "x = 3" (or "3 = x"), and for any label assigned a value — "(m,n) = (5,4)", "|PQ| = 7",
     * "g(t) = 7", "\\frac{AM}{MC} = 2": the value side; for a chain "a = b = 3", the last term; null
     * for an equation that is not a label and its value ("2x + z = 1"), which compares as an equation.
     */
    private static Node loneVariableValue(Node.Rel r) {
        if (r.ops().stream().anyMatch(o -> !o.equals("="))) {
            return null;
        }
        if (r.ops().size() > 1) {
            return r.terms().get(r.terms().size() - 1);
        }
        Node l = r.terms().get(0), v = r.terms().get(1);
        if (isLabel(l)) {
            return v;
        }
        if (isLabel(v)) {
            return l;
        }
        return null;
    }

    /**
     * A name, not a computation: a variable; names side by side (PQ, g(t)); a ratio of names (AM/MC);
     * |name|; a tuple of names. No number, no sum or difference.
     */
    static boolean isLabel(Node n) {
        if (n instanceof Node.Var) {
            return true;
        }
        if (n instanceof Node.Bin b) {
            return (b.op() == '*' || b.op() == '/') && isLabel(b.a()) && isLabel(b.b());
        }
        if (n instanceof Node.Func f) {
            return f.name().equals("abs") && isLabel(f.arg());
        }
        return n instanceof Node.Tuple t && !t.items().isEmpty() && t.items().stream().allMatch(Equivalence::isLabel);
    }

    /** x > 3 → (3, ∞); 1 <= x < 2 → [1, 2); null when the relation is not an interval in one variable. */
    private static Node asInterval(Node n) {
        if (n instanceof Node.Interval || n instanceof Node.Union) {
            return n;
        }
        if (!(n instanceof Node.Rel r) || r.ops().contains("=") || r.ops().contains("!=")) {
            return null;
        }
        List<Node> t = new ArrayList<>(r.terms());
        List<String> ops = new ArrayList<>(r.ops());
        if (ops.get(0).startsWith(">")) {
            java.util.Collections.reverse(t);
            java.util.Collections.reverse(ops);
            ops.replaceAll(o -> o.replace('>', '<'));
        }
        if (ops.stream().anyMatch(o -> o.startsWith(">"))) {
            return null;
        }
        Node inf = new Node.Const("inf");
        Node abs = absBand(t, ops, inf);
        if (abs != null || t.stream().anyMatch(Equivalence::isAbs)) {
            return abs; // |x| bounded: a band on both sides of 0, or nothing this reads
        }
        if (t.size() == 2) {
            boolean closed = ops.get(0).equals("<=");
            if (isLabel(t.get(0)) && !isLabel(t.get(1))) {
                return new Node.Interval(new Node.Neg(inf), t.get(1), false, closed); // x < a
            }
            if (isLabel(t.get(1)) && !isLabel(t.get(0))) {
                return new Node.Interval(t.get(0), inf, closed, false);              // a < x
            }
            return null;
        }
        // a < x < b, the middle a variable or a label (0 < g(x) < 2)
        if (t.size() == 3 && isLabel(t.get(1))) {
            return new Node.Interval(t.get(0), t.get(2), ops.get(0).equals("<="), ops.get(1).equals("<="));
        }
        return null;
    }

    private static boolean isAbs(Node n) {
        return n instanceof Node.Func f && f.name().equals("abs") && isLabel(f.arg());
    }

    /**
     * |x| between bounds, as the set of x: lo ≤ |x| ≤ hi is [−hi, −lo] ∪ [lo, hi] (one interval when lo
     * is a closed 0), |x| < h is (−h, h), a < |x| is (−∞, −a) ∪ (a, ∞); bounds must be numbers ≥ 0.
     * Null when the relation is not of this form. {@code t}, {@code ops} run upwards (< and <= only).
     */
    private static Node absBand(List<Node> t, List<String> ops, Node inf) {
        Node ninf = new Node.Neg(inf);
        if (t.size() == 3 && isAbs(t.get(1)) && nonNegative(t.get(0)) && nonNegative(t.get(2))) {
            boolean lc = ops.get(0).equals("<="), hc = ops.get(1).equals("<=");
            Node lo = t.get(0), hi = t.get(2);
            if (lc && isZero(lo)) {
                return new Node.Interval(new Node.Neg(hi), hi, hc, hc);
            }
            return new Node.Union(List.of(new Node.Interval(new Node.Neg(hi), new Node.Neg(lo), hc, lc), new Node.Interval(lo, hi, lc, hc)));
        }
        if (t.size() == 2 && isAbs(t.get(0)) && nonNegative(t.get(1))) {
            boolean c = ops.get(0).equals("<=");
            return new Node.Interval(new Node.Neg(t.get(1)), t.get(1), c, c);
        }
        if (t.size() == 2 && isAbs(t.get(1)) && nonNegative(t.get(0))) {
            boolean c = ops.get(0).equals("<=");
            return new Node.Union(List.of(new Node.Interval(ninf, new Node.Neg(t.get(0)), false, c), new Node.Interval(t.get(0), inf, c, false)));
        }
        return null;
    }

    private static boolean nonNegative(Node n) {
        return constant(n) >= 0;
    }

    private static boolean isZero(Node n) {
        return constant(n) == 0;
    }

    /** The value of a bound without variables, or NaN when it has none (every comparison with NaN is false). */
    private static double constant(Node n) {
        try {
            return Eval.num(n, Map.of(), new Deadline(10_000_000L));
        } catch (RuntimeException e) {
            return Double.NaN;
        }
    }

    private static boolean relations(Node.Rel a, Node.Rel b, Deadline dl) {
        if (a.terms().size() != b.terms().size()) {
            return false;
        }
        Node.Rel na = canonical(a), nb = canonical(b);
        if (!na.ops().equals(nb.ops())) {
            return false;
        }
        if (ordered(na.terms(), nb.terms(), dl)) {
            return true;
        }
        if (na.terms().size() != 2) {
            return false;
        }
        // lhs − rhs proportional: f_a = c·f_b, c ≠ 0 (c > 0 for inequalities)
        Node fa = new Node.Bin('-', na.terms().get(0), na.terms().get(1));
        Node fb = new Node.Bin('-', nb.terms().get(0), nb.terms().get(1));
        Double c = proportional(fa, fb, dl);
        if (c == null) {
            return false;
        }
        String op = na.ops().get(0);
        return op.equals("=") || op.equals("!=") ? c != 0 : c > 0;
    }

    /** Rewrites > and >= as < and <= by reversing the chain. */
    private static Node.Rel canonical(Node.Rel r) {
        if (r.ops().stream().noneMatch(o -> o.startsWith(">"))) {
            return r;
        }
        List<Node> t = new ArrayList<>(r.terms());
        List<String> ops = new ArrayList<>(r.ops());
        java.util.Collections.reverse(t);
        java.util.Collections.reverse(ops);
        ops.replaceAll(o -> o.startsWith(">") ? o.replace('>', '<') : o);
        return new Node.Rel(t, ops);
    }

    /** The constant c with fa = c·fb at every sampled point, or null. */
    private static Double proportional(Node fa, Node fb, Deadline dl) {
        TreeSet<String> vs = new TreeSet<>();
        Eval.vars(fa, vs);
        Eval.vars(fb, vs);
        Double c = null;
        int valid = 0;
        for (int p = 0; p < POINTS; p++) {
            Map<String, Double> at = point(vs, p);
            double x = Eval.num(fa, at, dl), y = Eval.num(fb, at, dl);
            if (!Double.isFinite(x) || !Double.isFinite(y) || Math.abs(y) < 1e-12) {
                continue;
            }
            double r = x / y;
            if (c == null) {
                c = r;
            } else if (!close(c, r)) {
                return null;
            }
            valid++;
        }
        return valid >= 3 ? c : null;
    }

    static boolean scalar(Node a, Node b, Deadline dl) {
        TreeSet<String> vs = new TreeSet<>();
        Eval.vars(a, vs);
        Eval.vars(b, vs);
        if (vs.isEmpty()) {
            Rational ra = Eval.exact(a, dl), rb = Eval.exact(b, dl);
            if (ra != null && rb != null) {
                return ra.equals(rb) || sameAtSixDecimals(ra.toDouble(), rb.toDouble(), a, b);
            }
            double x = Eval.num(a, Map.of(), dl), y = Eval.num(b, Map.of(), dl);
            if (Double.isInfinite(x) || Double.isInfinite(y)) {
                // ∞ written as \infty matches; a finite value that overflowed (10^{10^{10}}) matches nothing
                return x == y && mentionsInfinity(a) && mentionsInfinity(b);
            }
            return Double.isFinite(x) && Double.isFinite(y) && (close(x, y) || sameAtSixDecimals(x, y, a, b));
        }
        int valid = 0;
        for (int p = 0; p < POINTS; p++) {
            Map<String, Double> at = point(vs, p);
            double x = Eval.num(a, at, dl), y = Eval.num(b, at, dl);
            if (Double.isNaN(x) && Double.isNaN(y)) {
                continue;
            }
            if (!Double.isFinite(x) || !Double.isFinite(y)) {
                if (Double.isNaN(x) != Double.isNaN(y)) {
                    continue; // a branch cut or domain edge at this point: uninformative
                }
                return false;
            }
            if (!close(x, y)) {
                return false;
            }
            valid++;
        }
        return valid >= 3;
    }

    /**
     * Math-Verify's float_rounding=6: a decimal written to 6+ places matches the exact value it rounds
     * from (0.333333 = 1/3, 1.414214 = √2), while shorter decimals do not (0.33 ≠ 1/3, 3.14 ≠ π).
     */
    /** Decimal places a written decimal is compared at (Math-Verify's float_rounding; 6 unless a verifier sets it). */
    static final ThreadLocal<Integer> ROUNDING = ThreadLocal.withInitial(() -> 6);

    /** A decimal written to at least the rounding's places equals a value that rounds to it there. */
    private static boolean sameAtSixDecimals(double x, double y, Node a, Node b) {
        int d = ROUNDING.get();
        if (decimals(a) < d && decimals(b) < d) {
            return false;
        }
        double scale = Math.pow(10, d);
        return Math.abs(Math.round(x * scale) - Math.round(y * scale)) == 0;
    }

    /** The most decimal places of any number literal in the node. */
    private static int decimals(Node n) {
        if (n instanceof Node.Num x) {
            // a literal's denominator is 2^a·5^b after reduction; it was written with max(a, b) decimals
            java.math.BigInteger d = x.value().den();
            int twos = d.getLowestSetBit(), fives = 0;
            d = d.shiftRight(twos);
            java.math.BigInteger five = java.math.BigInteger.valueOf(5);
            while (d.mod(five).signum() == 0) {
                d = d.divide(five);
                fives++;
            }
            return Math.max(twos, fives);
        }
        if (n instanceof Node.Neg g) {
            return decimals(g.a());
        }
        if (n instanceof Node.Bin b) {
            return Math.max(decimals(b.a()), decimals(b.b()));
        }
        return 0;
    }

    private static boolean mentionsInfinity(Node n) {
        if (n instanceof Node.Const c) {
            return c.name().equals("inf");
        }
        if (n instanceof Node.Neg g) {
            return mentionsInfinity(g.a());
        }
        if (n instanceof Node.Bin b) {
            return mentionsInfinity(b.a()) || mentionsInfinity(b.b());
        }
        return false;
    }

    static boolean close(double x, double y) {
        return Math.abs(x - y) <= REL_TOL * Math.max(1.0, Math.max(Math.abs(x), Math.abs(y)));
    }

    /** Deterministic pseudo-random values in [0.5, 2.5] per variable name and point index. */
    private static Map<String, Double> point(TreeSet<String> vars, int p) {
        Map<String, Double> m = new HashMap<>();
        for (String v : vars) {
            long h = v.hashCode() * 0x9E3779B97F4A7C15L + (p + 1) * 0xBF58476D1CE4E5B9L;
            h ^= h >>> 31;
            h *= 0x94D049BB133111EBL;
            h ^= h >>> 29;
            m.put(v, 0.5 + 2.0 * ((h >>> 11) * 0x1.0p-53));
        }
        return m;
    }
}
