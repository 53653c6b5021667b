package klrl.rewards;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * A recursive-descent parser for the LaTeX found in math answers (after {@link Normalizer}).
 * Grammar, lowest precedence first: list (",") → union (\cup) → relation chain → sum (+ − ±) →
 * product (* / implicit) → unary (−) → power (^) → postfix (!) → primary. Depth and length are
 * bounded, and the deadline is checked as tokens are consumed.
 */
final class LatexParser {
    static final class ParseError extends RuntimeException {
        ParseError(String m) {
            super(m, null, false, false);
        }
    }

    static final int MAX_DEPTH = 200;
    static final Set<String> FUNCS = Set.of("sin", "cos", "tan", "sec", "csc", "cot", "arcsin", "arccos", "arctan",
            "sinh", "cosh", "tanh", "ln", "log", "exp", "lg");

    private final String s;
    private final Deadline deadline;
    private int i, depth;

    private LatexParser(String s, Deadline deadline) {
        this.s = s;
        this.deadline = deadline;
    }

    static Node parse(String s, Deadline deadline) {
        LatexParser p = new LatexParser(s, deadline);
        Node n = p.list(true);
        p.ws();
        if (p.i < s.length()) {
            throw new ParseError("unexpected '" + s.charAt(p.i) + "' at " + p.i);
        }
        return n;
    }

    // ---- lexing helpers

    private void ws() {
        while (i < s.length() && (Character.isWhitespace(s.charAt(i)))) {
            i++;
        }
    }

    private boolean peek(String t) {
        ws();
        return s.startsWith(t, i);
    }

    /** True when the command at i is exactly \name (not a prefix of a longer command). */
    private boolean peekCmd(String name) {
        ws();
        if (!s.startsWith("\\" + name, i)) {
            return false;
        }
        int e = i + 1 + name.length();
        return e >= s.length() || !Character.isLetter(s.charAt(e));
    }

    private boolean eat(String t) {
        if (peek(t)) {
            i += t.length();
            return true;
        }
        return false;
    }

    private boolean eatCmd(String name) {
        if (peekCmd(name)) {
            i += 1 + name.length();
            return true;
        }
        return false;
    }

    private void expect(String t) {
        if (!eat(t)) {
            throw new ParseError("expected '" + t + "' at " + i);
        }
    }

    private void enter() {
        if (++depth > MAX_DEPTH) {
            throw new ParseError("nested too deeply");
        }
        deadline.check();
    }

    // ---- grammar

    private Node list(boolean top) {
        enter();
        List<Node> items = new ArrayList<>();
        items.add(union());
        while (eat(",") || (top && (eatWord("or") || eatWord("and")))) {
            items.add(union());
        }
        depth--;
        return items.size() == 1 ? items.get(0) : new Node.SetOf(items, true);
    }

    private boolean eatWord(String w) {
        ws();
        if (s.startsWith(w, i) && (i + w.length() == s.length() || !Character.isLetter(s.charAt(i + w.length())))
                && (i == 0 || !Character.isLetter(s.charAt(i - 1)))) {
            i += w.length();
            return true;
        }
        return false;
    }

    private Node union() {
        Node a = relation();
        if (!peekCmd("cup") && !peek("U ")) {
            return a;
        }
        List<Node> parts = new ArrayList<>(List.of(a));
        while (eatCmd("cup") || eat("U ")) {
            parts.add(relation());
        }
        return new Node.Union(parts);
    }

    private static final String[] REL_OPS = {"<=", ">=", "!=", "=", "<", ">"};

    private Node relation() {
        List<Node> terms = new ArrayList<>(List.of(sum()));
        List<String> ops = new ArrayList<>();
        outer:
        while (true) {
            ws();
            for (String op : REL_OPS) {
                if (eat(op)) {
                    ops.add(op);
                    terms.add(sum());
                    continue outer;
                }
            }
            break;
        }
        return ops.isEmpty() ? terms.get(0) : new Node.Rel(terms, ops);
    }

    private Node sum() {
        enter();
        Node a = product();
        while (true) {
            if (eat("+")) {
                a = new Node.Bin('+', a, product());
            } else if (eatCmd("pm")) {
                a = new Node.Pm(a, product());
            } else if (eatCmd("mp")) {
                a = new Node.Pm(a, new Node.Neg(product()));
            } else if (peek("-") && !peek("->")) {
                i++;
                a = new Node.Bin('-', a, product());
            } else {
                break;
            }
        }
        depth--;
        return a;
    }

    private Node product() {
        Node a = unary();
        while (true) {
            if (eat("*")) {
                a = new Node.Bin('*', a, unary());
            } else if (eat("/")) {
                a = new Node.Bin('/', a, unary());
            } else if (startsPrimary()) {
                a = new Node.Bin('*', a, power()); // implicit multiplication binds like *
            } else {
                break;
            }
        }
        return a;
    }

    private boolean startsPrimary() {
        ws();
        if (i >= s.length()) {
            return false;
        }
        char c = s.charAt(i);
        if (Character.isDigit(c) || Character.isLetter(c) || c == '(' || c == '.') {
            return !(peekWordOp());
        }
        if (c == '\\') {
            for (String stop : new String[] {"pm", "mp", "cup", "right", "}", "\\"}) {
                if (s.startsWith("\\" + stop, i)) {
                    return false;
                }
            }
            return !s.startsWith("\\}", i);
        }
        return false;
    }

    private boolean peekWordOp() {
        for (String w : new String[] {"or", "and"}) {
            if (s.startsWith(w, i) && (i + w.length() == s.length() || !Character.isLetter(s.charAt(i + w.length())))) {
                return true;
            }
        }
        return false;
    }

    private Node unary() {
        if (eatCmd("pm")) {
            return new Node.Pm(new Node.Num(Rational.ZERO), unary());
        }
        if (eat("-")) {
            return new Node.Neg(unary());
        }
        if (eat("+")) {
            return unary();
        }
        return power();
    }

    private Node power() {
        Node base = postfix();
        if (eat("^")) {
            Node e = exponent();
            return new Node.Bin('^', base, e);
        }
        return base;
    }

    private Node exponent() {
        if (eat("{")) {
            Node e = list(false);
            expect("}");
            return e;
        }
        if (peek("-")) {
            i++;
            return new Node.Neg(exponent());
        }
        // Unbraced digits: TeX would read 2^10 as 2^1·0, but models that write it mean 2^{10}.
        ws();
        if (i < s.length() && Character.isDigit(s.charAt(i))) {
            int st = i;
            while (i < s.length() && Character.isDigit(s.charAt(i))) {
                i++;
            }
            return new Node.Num(Rational.parse(s.substring(st, i)));
        }
        return postfix();
    }

    private Node postfix() {
        Node a = primary();
        while (eat("!")) {
            a = new Node.Func("fact", a, null);
        }
        return a;
    }

    private Node primary() {
        enter();
        try {
            ws();
            if (i >= s.length()) {
                throw new ParseError("unexpected end");
            }
            char c = s.charAt(i);
            if (Character.isDigit(c) || (c == '.' && i + 1 < s.length() && Character.isDigit(s.charAt(i + 1)))) {
                return number();
            }
            if (c == '(' || c == '[') {
                i++;
                Node inner = list(false);
                ws();
                char close = i < s.length() ? s.charAt(i) : 0;
                if (close != ')' && close != ']') {
                    throw new ParseError("unclosed bracket");
                }
                i++;
                return bracket(c, close, inner);
            }
            if (eat("\\{")) {
                if (eat("\\}")) {
                    return new Node.SetOf(List.of(), false);
                }
                Node inner = list(false);
                expect("\\}");
                return new Node.SetOf(inner instanceof Node.SetOf so && so.bare() ? so.items() : List.of(inner), false);
            }
            if (eat("{")) {
                Node inner = list(false);
                expect("}");
                return inner;
            }
            if (eat("|")) {
                Node inner = sum();
                expect("|");
                return new Node.Func("abs", inner, null);
            }
            if (c == '\\') {
                return command();
            }
            if (Character.isLetter(c)) {
                return identifier();
            }
            throw new ParseError("unexpected '" + c + "'");
        } finally {
            depth--;
        }
    }

    private Node bracket(char open, char close, Node inner) {
        List<Node> items = inner instanceof Node.SetOf so && so.bare() ? so.items() : List.of(inner);
        if (items.size() == 2 && (open == '[' || close == ']' || infinite(items.get(0)) || infinite(items.get(1)))) {
            return new Node.Interval(items.get(0), items.get(1), open == '[', close == ']');
        }
        if (items.size() == 1) {
            return items.get(0);
        }
        return new Node.Tuple(items);
    }

    private static boolean infinite(Node n) {
        return n instanceof Node.Const c && c.name().equals("inf")
                || n instanceof Node.Neg g && g.a() instanceof Node.Const c2 && c2.name().equals("inf");
    }

    private Node number() {
        int st = i;
        while (i < s.length() && (Character.isDigit(s.charAt(i)) || s.charAt(i) == '.')) {
            i++;
        }
        // scientific notation 1.5e3 / 2E-4 (only directly after digits)
        if (i + 1 < s.length() && (s.charAt(i) == 'e' || s.charAt(i) == 'E')) {
            int j = i + 1;
            if (j < s.length() && (s.charAt(j) == '-' || s.charAt(j) == '+')) {
                j++;
            }
            if (j < s.length() && Character.isDigit(s.charAt(j))) {
                while (j < s.length() && Character.isDigit(s.charAt(j))) {
                    j++;
                }
                i = j;
            }
        }
        String lit = s.substring(st, i);
        try {
            return new Node.Num(Rational.parse(lit));
        } catch (NumberFormatException e) {
            throw new ParseError("bad number '" + lit + "'");
        }
    }

    private Node identifier() {
        int st = i;
        while (i < s.length() && Character.isLetter(s.charAt(i))) {
            i++;
        }
        String word = s.substring(st, i);
        if (FUNCS.contains(word)) {
            return function(word);
        }
        if (word.equals("pi")) {
            return new Node.Const("pi");
        }
        if (word.equals("inf") || word.equals("infty") || word.equals("infinity")) {
            return new Node.Const("inf");
        }
        if (word.length() > 1) {
            // "xy" is x·y; words are text answers, decided by the caller before parsing
            i = st + 1;
            word = word.substring(0, 1);
        }
        return new Node.Var(word + subscript());
    }

    private String subscript() {
        if (!eat("_")) {
            return "";
        }
        if (eat("{")) {
            int st = i;
            int d = 1;
            while (i < s.length() && d > 0) {
                char c = s.charAt(i++);
                d += c == '{' ? 1 : c == '}' ? -1 : 0;
            }
            return "_" + s.substring(st, i - 1).replace(" ", "");
        }
        ws();
        return i < s.length() ? "_" + s.charAt(i++) : "";
    }

    private Node command() {
        i++; // backslash
        int st = i;
        while (i < s.length() && Character.isLetter(s.charAt(i))) {
            i++;
        }
        String name = s.substring(st, i);
        switch (name) {
            case "frac", "dfrac", "tfrac", "cfrac" -> {
                Node a = arg(), b = arg();
                return new Node.Bin('/', a, b);
            }
            case "sqrt" -> {
                Node index = null;
                if (eat("[")) {
                    index = sum();
                    expect("]");
                }
                return new Node.Func("sqrt", arg(), index);
            }
            case "pi" -> {
                return new Node.Const("pi");
            }
            case "infty", "infin" -> {
                return new Node.Const("inf");
            }
            case "begin" -> {
                return matrix();
            }
            case "binom", "dbinom", "tbinom", "choose" -> {
                Node n = arg(), k = arg();
                return new Node.Func("binom", new Node.Tuple(List.of(n, k)), null);
            }
            case "emptyset", "varnothing" -> {
                return new Node.SetOf(List.of(), false);
            }
            default -> {
                if (FUNCS.contains(name)) {
                    return function(name);
                }
                if (name.length() > 0 && Character.isLetter(name.charAt(0))) {
                    // Greek letters and other symbols are variables
                    return new Node.Var("\\" + name + subscript());
                }
                throw new ParseError("unknown command \\" + name);
            }
        }
    }

    /** One TeX argument: {…} or a single token. */
    private Node arg() {
        ws();
        if (eat("{")) {
            Node n = list(false);
            expect("}");
            return n;
        }
        if (i < s.length() && Character.isDigit(s.charAt(i))) {
            return new Node.Num(Rational.of(s.charAt(i++) - '0'));
        }
        if (i < s.length() && Character.isLetter(s.charAt(i))) {
            return new Node.Var(String.valueOf(s.charAt(i++)));
        }
        return primary();
    }

    private Node function(String name) {
        Node base = null;
        if (name.equals("log") && eat("_")) {
            base = arg();
        }
        Node power = null;
        if (eat("^")) {
            power = exponent();
        }
        Node argument;
        if (peek("(")) {
            argument = primary();
        } else if (peek("{")) {
            argument = arg();
        } else {
            argument = power();
        }
        Node f = new Node.Func(name.equals("lg") ? "log" : name, argument, base);
        if (power != null) {
            // sin^{-1} x is arcsin x, sin^2 x is (sin x)^2
            if (power instanceof Node.Neg n && n.a() instanceof Node.Num num && num.value().equals(Rational.ONE)
                    && Set.of("sin", "cos", "tan").contains(name)) {
                return new Node.Func("arc" + name, argument, null);
            }
            return new Node.Bin('^', f, power);
        }
        return f;
    }

    private Node matrix() {
        expect("{");
        int st = i;
        while (i < s.length() && s.charAt(i) != '}') {
            i++;
        }
        String env = s.substring(st, i);
        expect("}");
        if (env.equals("array") && peek("{")) { // column spec such as {cc}
            while (i < s.length() && s.charAt(i) != '}') {
                i++;
            }
            expect("}");
        }
        String end = "\\end{" + env + "}";
        int stop = s.indexOf(end, i);
        if (stop < 0) {
            throw new ParseError("missing " + end);
        }
        String body = s.substring(i, stop);
        i = stop + end.length();
        List<List<Node>> rows = new ArrayList<>();
        for (String row : body.split("\\\\\\\\")) {
            if (row.isBlank()) {
                continue;
            }
            List<Node> r = new ArrayList<>();
            for (String cell : row.split("&")) {
                r.add(LatexParser.parse(cell.strip(), deadline));
            }
            rows.add(r);
        }
        return new Node.Matrix(rows);
    }
}
