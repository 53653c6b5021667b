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

    /** The answer text, or null when nothing answer-like is found. */
    public String extract(String text) {
        if (text == null) {
            return null;
        }
        // \boxed is found by a linear scan of the whole text; the regex fall-backs only see the tail
        String boxed = boxedAnswer(text);
        String t = text.length() > TAIL ? text.substring(text.length() - TAIL) : text;
        if (boxed != null) {
            return boxed;
        }
        for (Fallback f : fallbacks) {
            String a = switch (f) {
                case ANSWER_IS -> pastUnparseable(sentenceAnswer(last(ANSWER_IS, t)), t);
                case GSM8K -> last(GSM8K, t);
                case LAST_DOLLAR -> lastMath(t);
                case WHOLE -> answerLike(t) ? t : null;
                case LAST_NUMBER -> lastNumber(t);
            };
            if (a != null && !a.isBlank()) {
                return a.strip();
            }
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

    /**
     * The stated answer, unless it is LaTeX that does not parse (say {@code \\prod_{j=1}^m\\bigl(j\\bigr)}):
     * then a later answer in the text — its last math span, else its last number — when there is one
     * after the stated one; no number is pulled out of the failed span itself.
     */
    static String pastUnparseable(String stated, String t) {
        if (stated == null || stated.indexOf('\\') < 0 || parses(stated)) {
            return stated;
        }
        int at = t.lastIndexOf(stated);
        if (at < 0) {
            return stated;
        }
        String rest = t.substring(at + stated.length());
        rest = rest.startsWith("$") ? rest.substring(1) : rest; // the failed span's own closing dollar
        String later = lastMath(rest);
        later = later != null && !later.isBlank() ? later : lastNumber(rest);
        return later != null && !later.isBlank() ? later : stated;
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
        Matcher m = p.matcher(s);
        String out = null;
        while (m.find()) {
            out = m.group(1);
        }
        if (out != null) {
            out = out.strip();
            if (out.startsWith("$") && out.endsWith("$") && out.length() > 1) {
                out = out.substring(1, out.length() - 1);
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
        if (s == null) {
            return null;
        }
        for (int depth = 0; depth < 3; depth++) { // "Final Answer: The final answer is X"
            String inner = last(ANSWER_IS, s);
            if (inner == null || inner.isBlank() || inner.equals(s)) {
                break;
            }
            s = inner;
        }
        s = s.strip().replaceAll("[.\\s]+$", "");
        if (s.startsWith("$") && s.endsWith("$") && s.length() > 1 && s.indexOf('$', 1) == s.length() - 1) {
            s = s.substring(1, s.length() - 1);
        }
        if (answerLike(s)) {
            return s;
        }
        if (s.endsWith("$")) {
            String m = lastMath(s);
            if (m != null && !m.isBlank()) {
                return m;
            }
        }
        int is = Math.max(s.lastIndexOf(" is "), s.lastIndexOf(" = "));
        if (is >= 0) {
            String after = s.substring(is + 3).strip();
            if (after.startsWith("$") && after.endsWith("$") && after.length() > 1) {
                after = after.substring(1, after.length() - 1);
            }
            if (!after.isBlank() && answerLike(after)) {
                return after;
            }
        }
        String n = lastNumber(s);
        return n != null ? n : s;
    }

    /** The next "$" from {@code from} that is not the escaped dollar sign "\\$", or −1. */
    private static int unescapedDollar(String s, int from) {
        int a = s.indexOf('$', from);
        while (a > 0 && s.charAt(a - 1) == '\\') {
            a = s.indexOf('$', a + 1);
        }
        return a;
    }

    private static String lastMath(String s) {
        List<String> spans = new ArrayList<>();
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
            spans.add(s.substring(a + close.length(), b));
            i = b + close.length();
        }
        int p = s.lastIndexOf("\\(");
        if (p >= 0) {
            int q = s.indexOf("\\)", p);
            if (q > p && (spans.isEmpty() || p > s.lastIndexOf('$'))) {
                return s.substring(p + 2, q);
            }
        }
        return spans.isEmpty() ? null : spans.get(spans.size() - 1);
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

    private static String lastNumber(String s) {
        Matcher m = NUMBER.matcher(s);
        String out = null;
        while (m.find()) {
            out = m.group();
        }
        return out;
    }
}
