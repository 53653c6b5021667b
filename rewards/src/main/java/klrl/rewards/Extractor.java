package klrl.rewards;

import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Finds the final answer in a completion or a gold solution. The last {@code \boxed{…}} /
 * {@code \fbox{…}} (balanced braces) wins; otherwise the configured fall-backs are tried in order.
 * Only the tail of very long texts is scanned, so a 100 kB completion costs the same as a short one.
 */
public final class Extractor {

    /** Fall-back strategies after \boxed, by name. */
    public enum Fallback {
        /** "The answer is X" / "Answer: X" / "final answer is X" (last occurrence). */
        ANSWER_IS,
        /** GSM8K's "#### X". */
        GSM8K,
        /** The last $…$ or \(…\) math span. */
        LAST_DOLLAR,
        /** The whole text, when it is short and reads as an answer rather than prose (a bare "x^2+1"). */
        WHOLE,
        /** The last number (integer, decimal, fraction a/b, with sign and thousands separators). */
        LAST_NUMBER
    }

    public static final List<Fallback> DEFAULT = List.of(Fallback.ANSWER_IS, Fallback.GSM8K, Fallback.LAST_DOLLAR, Fallback.WHOLE, Fallback.LAST_NUMBER);

    static final int TAIL = 20_000;
    private static final Pattern ANSWER_IS = Pattern.compile(
            "(?i)(?:final answer|the answer|answer)\\s*(?:is|:|=)\\s*:?\\s*(.+?)(?:\\.\\s|\\.$|\\n|$)");
    private static final Pattern GSM8K = Pattern.compile("####\\s*([^\\n]+)");
    /** A number not glued to letters before it ("AZYUK2A" holds no answer; "12m" does). */
    private static final Pattern NUMBER = Pattern.compile(
            "(?<![A-Za-z\\d,.])(?:-?\\d{1,3}(?:,\\d{3})+(?:\\.\\d+)?(?!\\d)|-?\\d+,\\d{2}(?![\\d,])|-?\\d+(?:\\.\\d+)?(?:/\\d+)?|-?\\.\\d+)");

    private final List<Fallback> fallbacks;
    private static final Extractor DEFAULT_EXTRACTOR = new Extractor(DEFAULT);

    public Extractor(List<Fallback> fallbacks) {
        this.fallbacks = List.copyOf(fallbacks);
    }

    /** The fall-backs after \boxed, in the order they are tried. */
    public List<Fallback> fallbacks() {
        return fallbacks;
    }

    /** The answer text, or null when nothing answer-like is found. */
    public String extract(String text) {
        Found f = find(text);
        return f == null ? null : f.answer();
    }

    /** How an answer was found: in boxes, or by one of the fall-backs. */
    public enum Rule {
        /** The last \boxed{} or \fbox{}. */
        BOXED,
        /** Boxes side by side, read together as one list. */
        BOXES,
        /** A stated answer ("The answer is X", "Answer: X"). */
        ANSWER_IS,
        /** A stated answer whose LaTeX does not read: the last math span after it. */
        LATER_MATH,
        /** A stated answer whose LaTeX does not read: the last number after it. */
        LATER_NUMBER,
        /** GSM8K's "#### X". */
        GSM8K,
        /** The last $…$ or \(…\) math span. */
        LAST_MATH,
        /** The whole text, short and without prose. */
        WHOLE,
        /** The last number. */
        LAST_NUMBER
    }

    /**
     * An answer and where it came from: characters [start, end) of the text (−1 for boxes, whose
     * answer may join several), the fall-backs tried before without result, and for
     * {@link Rule#LATER_MATH}/{@link Rule#LATER_NUMBER} the stated answer that did not read.
     */
    public record Found(String answer, Rule rule, int start, int end, List<Fallback> triedBefore, String unread) {}

    /** A span [start, end) of some string. */
    private record Span(int start, int end) {
        Span shift(int by) {
            return new Span(start + by, end + by);
        }

        String in(String s) {
            return s.substring(start, end);
        }

        /** The span without the whitespace {@link String#strip()} removes. */
        Span strip(String s) {
            int a = start, b = end;
            while (a < b && Character.isWhitespace(s.charAt(a))) {
                a++;
            }
            while (b > a && Character.isWhitespace(s.charAt(b - 1))) {
                b--;
            }
            return new Span(a, b);
        }
    }

    /**
     * The answer with the rule that found it, or null when nothing answer-like is found. The one path
     * {@link #extract} takes, so what it reports is what the verifier used.
     */
    public Found find(String text) {
        if (text == null) {
            return null;
        }
        // \boxed is found by a linear scan of the whole text; the regex fall-backs only see the tail
        String boxed = boxedAnswer(text);
        int offset = Math.max(0, text.length() - TAIL);
        String t = text.substring(offset);
        if (boxed != null) {
            Rule r = boxed.equals(lastBoxed(text)) ? Rule.BOXED : Rule.BOXES;
            return new Found(boxed, r, -1, -1, List.of(), null);
        }
        List<Fallback> tried = new ArrayList<>();
        for (Fallback f : fallbacks) {
            Span a = null;
            Rule rule = null;
            String unread = null;
            switch (f) {
                case ANSWER_IS -> {
                    Span sentence = lastGroup(ANSWER_IS, t);
                    if (sentence != null) {
                        Span stated = sentenceSpan(sentence.in(t)).shift(sentence.start());
                        Picked p = pastUnparseable(stated, t);
                        a = p.span();
                        rule = p.rule();
                        unread = p.rule() == Rule.ANSWER_IS ? null : stated.in(t);
                    }
                }
                case GSM8K -> {
                    a = lastGroup(GSM8K, t);
                    rule = Rule.GSM8K;
                }
                case LAST_DOLLAR -> {
                    a = lastMathSpan(t);
                    rule = Rule.LAST_MATH;
                }
                case WHOLE -> {
                    a = answerLike(t) ? new Span(0, t.length()) : null;
                    rule = Rule.WHOLE;
                }
                case LAST_NUMBER -> {
                    a = lastNumberSpan(t);
                    rule = Rule.LAST_NUMBER;
                }
            }
            if (a != null && !a.in(t).isBlank()) {
                Span s = a.strip(t).shift(offset);
                return new Found(s.in(text), rule, s.start(), s.end(), List.copyOf(tried), unread);
            }
            tried.add(f);
        }
        return null;
    }

    /** Gold answers: a \boxed{} inside a full solution, "#### X", or the bare answer itself. */
    public static String gold(String gold) {
        if (gold == null) {
            return null;
        }
        String b = boxedAnswer(gold);
        if (b != null) {
            return b;
        }
        String g = last(GSM8K, gold);
        if (g != null) {
            return g.strip();
        }
        // a whole worked solution without a box (longer than any answer): its answer as a completion's would be found
        boolean prose = gold.length() > 200 && PROSE_WORD.matcher(gold.replaceAll("\\\\text\\{[^}]*\\}", "")).find();
        String e = prose ? DEFAULT_EXTRACTOR.extract(gold) : null;
        return e != null ? e : gold.strip();
    }

    /**
     * What the boxes of a text answer. Boxes written one after another with only a separator between
     * them ("\\boxed{1} and \\boxed{2}", "\\boxed{2} or \\boxed{3}", "$\\boxed{1}\\boxed{2}$") answer
     * together, as a list, so hedging between candidates is judged as the list it is; otherwise the last
     * box answers (a model may correct itself: "first \\boxed{2}, but then it is \\boxed{3}").
     * Null when there is no box.
     */
    static String boxedAnswer(String s) {
        List<String> group = new ArrayList<>();
        int from = 0, prevEnd = -1;
        while (true) {
            int i = s.indexOf("\\boxed{", from);
            if (i < 0) {
                break;
            }
            int end = closingBrace(s, i + 6);
            String b = lastBoxed(s.substring(i, end + 1));
            if (prevEnd < 0 || !joins(s.substring(prevEnd + 1, i))) {
                group.clear();
            }
            if (b != null && !b.isBlank()
                    && group.stream().noneMatch(x -> Normalizer.normalize(x).equals(Normalizer.normalize(b.strip())))) {
                group.add(b.strip());
            }
            prevEnd = end;
            from = end + 1;
        }
        return group.size() > 1 ? String.join(", ", group) : lastBoxed(s);
    }

    /**
     * Whether the text between two boxes joins them: a separator ("and", "or", commas, \\quad, math
     * delimiters), or words around an "and"/"or" that name what each box counts ("\\boxed{3} cats and
     * \\boxed{5} dogs", "\\quad\\text{and}\\quad") — at most two such words, none of them a word
     * that corrects or concludes ("but", "wait", "so", "is", …), after which the last box answers.
     */
    static boolean joins(String between) {
        if (SEPARATOR.matcher(between).matches()) {
            return true;
        }
        String t = between.replaceAll("\\\\text\\{([^{}]*)\\}", " $1 ").replaceAll("\\\\[()\\[\\]]|\\\\q?quad|[$,;.:]", " ").strip();
        if (t.isEmpty()) {
            return true;
        }
        String[] words = t.split("\\s+");
        int connectors = 0, others = 0;
        for (String w : words) {
            String lw = w.toLowerCase(java.util.Locale.ROOT);
            if (lw.equals("and") || lw.equals("or")) {
                connectors++;
            } else if (lw.matches("[a-z]+") && !CORRECTING.contains(lw)) {
                others++;
            } else {
                return false;
            }
        }
        return connectors >= 1 && others <= 2;
    }

    private static final java.util.Set<String> CORRECTING = java.util.Set.of("but", "wait", "actually", "however", "instead",
            "rather", "correct", "corrected", "correction", "no", "not", "so", "then", "thus", "hence", "therefore", "is", "are",
            "be", "it", "final", "answer", "mistake", "oops", "recheck", "check", "again");

    /** What may stand between boxes that answer together. */
    private static final Pattern SEPARATOR = Pattern.compile(
            "[\\s$,;]*(?:(?:and|or|\\\\text\\{\\s*(?:and|or)\\s*\\}|\\\\quad|\\\\qquad)[\\s$,;]*)?");

    /** Index of the brace closing the one at {@code open}, or the text's last index when unbalanced. */
    private static int closingBrace(String s, int open) {
        int depth = 0;
        for (int k = open; k < s.length(); k++) {
            char c = s.charAt(k);
            if (c == '\\' && k + 1 < s.length()) {
                k++;
            } else if (c == '{') {
                depth++;
            } else if (c == '}' && --depth == 0) {
                return k;
            }
        }
        return s.length() - 1;
    }

    /** Content of the last \boxed{…} or \fbox{…} (also "\boxed 5"), braces balanced; null if none. */
    public static String lastBoxed(String s) {
        int i = Math.max(s.lastIndexOf("\\boxed"), s.lastIndexOf("\\fbox"));
        while (i >= 0) {
            int start = s.indexOf(s.startsWith("\\boxed", i) ? "\\boxed" : "\\fbox", i);
            int j = start + (s.startsWith("\\boxed", i) ? 6 : 5);
            while (j < s.length() && s.charAt(j) == ' ') {
                j++;
            }
            if (j < s.length() && s.charAt(j) == '{') {
                int depth = 0;
                for (int k = j; k < s.length(); k++) {
                    char c = s.charAt(k);
                    if (c == '\\' && k + 1 < s.length()) {
                        k++; // skip escaped char such as \{ or \}
                        continue;
                    }
                    if (c == '{') {
                        depth++;
                    } else if (c == '}' && --depth == 0) {
                        return s.substring(j + 1, k);
                    }
                }
            } else if (j > start + 5 && j < s.length()) {
                // "\boxed 5": up to the next space or $
                int k = j;
                while (k < s.length() && s.charAt(k) != '$' && !Character.isWhitespace(s.charAt(k))) {
                    k++;
                }
                if (k > j) {
                    return s.substring(j, k);
                }
            }
            // unbalanced: try an earlier one
            int before = i - 1;
            i = before < 0 ? -1 : Math.max(s.lastIndexOf("\\boxed", before), s.lastIndexOf("\\fbox", before));
        }
        return null;
    }

    /** A span of the text and the rule that picked it. */
    private record Picked(Span span, Rule rule) {}

    /**
     * The stated answer, unless it is LaTeX that does not parse (say {@code \\prod_{j=1}^m\\bigl(j\\bigr)}):
     * then a later answer in the text — its last math span, else its last number — when there is one
     * after the stated one; no number is pulled out of the failed span itself. Spans are of {@code t}.
     */
    private static Picked pastUnparseable(Span statedSpan, String t) {
        String stated = statedSpan.in(t);
        Picked asStated = new Picked(statedSpan, Rule.ANSWER_IS);
        if (stated.indexOf('\\') < 0 || parses(stated)) {
            return asStated;
        }
        int at = t.lastIndexOf(stated);
        if (at < 0) {
            return asStated;
        }
        int from = at + stated.length();
        from += t.startsWith("$", from) ? 1 : 0; // the failed span's own closing dollar
        String rest = t.substring(from);
        Span math = lastMathSpan(rest);
        if (math != null && !math.in(rest).isBlank()) {
            return new Picked(math.shift(from), Rule.LATER_MATH);
        }
        Span number = lastNumberSpan(rest);
        return number != null && !number.in(rest).isBlank() ? new Picked(number.shift(from), Rule.LATER_NUMBER) : asStated;
    }

    /** Whether LaTeX reads as math: it parses, and no unknown command was taken for a variable. */
    private static boolean parses(String latex) {
        try {
            return !unknownCommand(LatexParser.parse(Normalizer.normalize(latex), new Deadline(50_000_000L)));
        } catch (LatexParser.ParseError | Deadline.Expired e) {
            return false;
        } catch (RuntimeException | StackOverflowError e) {
            return false;
        }
    }

    /** A variable named by a backslash command the parser does not know (\\prod_{j=1} read as a name). */
    static boolean unknownCommand(Node n) {
        if (n instanceof Node.Var v) {
            return v.name().startsWith("\\");
        }
        List<Node> parts = new ArrayList<>();
        if (n instanceof Node.Bin b) {
            parts.addAll(List.of(b.a(), b.b()));
        } else if (n instanceof Node.Neg g) {
            parts.add(g.a());
        } else if (n instanceof Node.Pm p) {
            parts.addAll(List.of(p.a(), p.b()));
        } else if (n instanceof Node.Func f) {
            parts.add(f.arg());
            if (f.index() != null) {
                parts.add(f.index());
            }
        } else if (n instanceof Node.Tuple t) {
            parts.addAll(t.items());
        } else if (n instanceof Node.SetOf s) {
            parts.addAll(s.items());
        } else if (n instanceof Node.Union u) {
            parts.addAll(u.parts());
        } else if (n instanceof Node.Rel r) {
            parts.addAll(r.terms());
        } else if (n instanceof Node.Interval i) {
            parts.addAll(List.of(i.lo(), i.hi()));
        } else if (n instanceof Node.Matrix m) {
            m.rows().forEach(parts::addAll);
        }
        return parts.stream().anyMatch(Extractor::unknownCommand);
    }

    private static String last(Pattern p, String s) {
        Span sp = lastGroup(p, s);
        return sp == null ? null : sp.in(s);
    }

    /** Group 1 of the last match, stripped and without the $…$ around it; null when nothing matches. */
    private static Span lastGroup(Pattern p, String s) {
        Matcher m = p.matcher(s);
        Span out = null;
        while (m.find()) {
            out = new Span(m.start(1), m.end(1));
        }
        if (out != null) {
            out = out.strip(s);
            if (out.end() - out.start() > 1 && s.charAt(out.start()) == '$' && s.charAt(out.end() - 1) == '$') {
                out = new Span(out.start() + 1, out.end() - 1);
            }
        }
        return out;
    }

    /**
     * The value inside an "answer is" sentence: "Final Answer: The final answer is $14{,}916$" gives
     * 14{,}916, "The largest $n$ is 34" gives 34, "Jane started growing Sphere 3 hours ago" gives 3.
     * A sentence that already reads as an answer is kept whole.
     */
    static String sentenceAnswer(String s) {
        return s == null ? null : sentenceSpan(s).in(s);
    }

    /** {@link #sentenceAnswer} as a span of the sentence. */
    private static Span sentenceSpan(String sentence) {
        Span cur = new Span(0, sentence.length());
        for (int depth = 0; depth < 3; depth++) { // "Final Answer: The final answer is X"
            String s = cur.in(sentence);
            Span inner = lastGroup(ANSWER_IS, s);
            if (inner == null || inner.in(s).isBlank() || inner.in(s).equals(s)) {
                break;
            }
            cur = inner.shift(cur.start());
        }
        cur = cur.strip(sentence);
        int end = cur.end();
        while (end > cur.start() && ".\t\n\u000B\f\r ".indexOf(sentence.charAt(end - 1)) >= 0) { // [.\s]+$
            end--;
        }
        cur = new Span(cur.start(), end);
        String s = cur.in(sentence);
        if (s.startsWith("$") && s.endsWith("$") && s.length() > 1 && s.indexOf('$', 1) == s.length() - 1) {
            cur = new Span(cur.start() + 1, cur.end() - 1);
            s = cur.in(sentence);
        }
        if (answerLike(s)) {
            return cur;
        }
        if (s.endsWith("$")) {
            Span m = lastMathSpan(s);
            if (m != null && !m.in(s).isBlank()) {
                return m.shift(cur.start());
            }
        }
        int is = Math.max(s.lastIndexOf(" is "), s.lastIndexOf(" = "));
        if (is >= 0) {
            Span after = new Span(is + 3, s.length()).strip(s);
            String a = after.in(s);
            if (a.startsWith("$") && a.endsWith("$") && a.length() > 1) {
                after = new Span(after.start() + 1, after.end() - 1);
                a = after.in(s);
            }
            if (!a.isBlank() && answerLike(a)) {
                return after.shift(cur.start());
            }
        }
        Span n = lastNumberSpan(s);
        return n != null ? n.shift(cur.start()) : cur;
    }

    /** The next "$" from {@code from} that is not the escaped dollar sign "\\$", or −1. */
    private static int unescapedDollar(String s, int from) {
        int a = s.indexOf('$', from);
        while (a > 0 && s.charAt(a - 1) == '\\') {
            a = s.indexOf('$', a + 1);
        }
        return a;
    }

    /** The content of the last $…$, $$…$$ or \(…\) span (the \(…\) one when it comes after every $). */
    private static Span lastMathSpan(String s) {
        Span last = null;
        int i = 0;
        while (i < s.length()) {
            int a = unescapedDollar(s, i);
            if (a < 0) {
                break;
            }
            boolean display = a + 1 < s.length() && s.charAt(a + 1) == '$';
            String close = display ? "$$" : "$";
            int b = display ? s.indexOf(close, a + 2) : unescapedDollar(s, a + 1);
            if (b < 0) {
                break;
            }
            last = new Span(a + close.length(), b);
            i = b + close.length();
        }
        int p = s.lastIndexOf("\\(");
        if (p >= 0) {
            int q = s.indexOf("\\)", p);
            if (q > p && (last == null || p > s.lastIndexOf('$'))) {
                return new Span(p + 2, q);
            }
        }
        return last;
    }

    private static final Pattern PROSE_WORD = Pattern.compile("(?<![\\\\a-zA-Z])[a-zA-Z]{4,}");

    private static final Pattern SHORT_WORD = Pattern.compile("(?<![\\\\a-zA-Z])[a-zA-Z]{2,}(?![a-zA-Z])");

    /**
     * Short and without prose: no word of four or more letters and at most two shorter words ("2 or 3"
     * reads as an answer, "not it's not 10" does not); LaTeX commands and \text{…} do not count.
     */
    static boolean answerLike(String s) {
        if (s.length() > 200) {
            return false;
        }
        String t = s.replaceAll("\\\\text\\{[^}]*\\}", "");
        if (PROSE_WORD.matcher(t).find()) {
            return false;
        }
        Matcher m = SHORT_WORD.matcher(t);
        int words = 0;
        while (m.find()) {
            words++;
        }
        return words <= 2;
    }

    private static Span lastNumberSpan(String s) {
        Matcher m = NUMBER.matcher(s);
        Span out = null;
        while (m.find()) {
            out = new Span(m.start(), m.end());
        }
        return out;
    }
}
