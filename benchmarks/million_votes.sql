-- One million votes in PostgreSQL for `benchmarks/results_bench.py --campaign million` and
-- `benchmarks/stats_bench.py --campaign million` (run by hand).
--
-- Setup (an empty PostgreSQL database in DATABASE_URL):
--   python manage.py migrate
--   python manage.py import_evalset fixtures/self_instruct/user_oriented_instructions.jsonl --name self-instruct
--   python manage.py import_outputs fixtures/alpaca_eval/alpaca-7b.json --model alpaca-7b --evalset self-instruct
--   python manage.py import_outputs fixtures/alpaca_eval/text_davinci_003.json --model text-davinci-003 --evalset self-instruct
--   python manage.py shell -c "from comparisons import services; from generation.models import EvalSet, ModelEntry; \
--     c = services.campaign_create(slug='million', title='One million votes', eval_set=EvalSet.objects.get(name='self-instruct'), \
--     models=list(ModelEntry.objects.filter(name__in=['alpaca-7b', 'text-davinci-003'])), votes_per_comparison=4000); \
--     services.campaign_open(campaign=c)"
--   psql "$DATABASE_URL" -f benchmarks/million_votes.sql        (about 2 minutes)
--   python benchmarks/results_bench.py --campaign million     (the results page and votes export over HTTP)
--   python benchmarks/stats_bench.py --campaign million
--
-- 3,969 raters each vote once on each of the 252 comparisons (1,000,188 votes, random verdicts).
-- About 5% of the votes are faster than MIN_SECONDS_PER_VOTE (3 s), 1% of the raters are flagged and one vote
-- in a thousand reports an identity leak, so the results page's "exclude flagged" and "exclude identity reports"
-- views have work to do. One transaction: a failure leaves nothing behind.
-- This bypasses the services on purpose: it is test data for timing, not a way to record votes.
\set ON_ERROR_STOP on
BEGIN;
INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
SELECT '!', false, 'bench-rater-' || g, '', '', '', false, true, now() FROM generate_series(1, 3969) g;
INSERT INTO comparisons_rater (participant_id, completion_code, flagged, flag_reason, created_at, campaign_id, user_id)
SELECT '', 'X', u.id % 100 = 0, CASE WHEN u.id % 100 = 0 THEN 'benchmark' ELSE '' END, now(), (SELECT id FROM comparisons_campaign WHERE slug='million'), u.id FROM auth_user u WHERE u.username LIKE 'bench-rater-%';
INSERT INTO comparisons_assignment (token, left_is_a, status, created_at, leased_until, closed_at, comparison_id, rater_id)
SELECT md5(c.id::text || '-' || r.id::text), random() < 0.5, 'voted', now(), now(), now(), c.id, r.id
FROM comparisons_comparison c JOIN comparisons_rater r ON r.campaign_id = c.campaign_id
WHERE c.campaign_id = (SELECT id FROM comparisons_campaign WHERE slug='million') AND NOT c.is_attention_check;
INSERT INTO comparisons_vote (choice, rationale, seconds, submitted_at, attention_failed, identity_reported, assignment_id,
  comparison_id, rater_id, campaign_id, left_is_a, routing_probability, winner_model_id, winner_response_id)
SELECT v.choice, '', round((random() * 60)::numeric, 1), now() - (random() * interval '10 days'), false, random() < 0.001, v.aid,
  v.comparison_id, v.rater_id, c.campaign_id, v.left_is_a, v.routing_probability,
  CASE v.choice WHEN 'left' THEN (CASE WHEN v.left_is_a THEN ra.model_id ELSE rb.model_id END)
                WHEN 'right' THEN (CASE WHEN v.left_is_a THEN rb.model_id ELSE ra.model_id END) END,
  CASE v.choice WHEN 'left' THEN (CASE WHEN v.left_is_a THEN ra.id ELSE rb.id END)
                WHEN 'right' THEN (CASE WHEN v.left_is_a THEN rb.id ELSE ra.id END) END
FROM (SELECT a.id AS aid, a.left_is_a, a.comparison_id, a.rater_id, a.routing_probability,
        (ARRAY['left','right','tie','both_bad'])[1 + floor(random() * 3.99)::int] AS choice
      FROM comparisons_assignment a JOIN comparisons_comparison ac ON ac.id = a.comparison_id
      WHERE ac.campaign_id = (SELECT id FROM comparisons_campaign WHERE slug='million')
        AND NOT EXISTS (SELECT 1 FROM comparisons_vote x WHERE x.assignment_id = a.id)) v
JOIN comparisons_comparison c ON c.id = v.comparison_id
JOIN generation_response ra ON ra.id = c.response_a_id
JOIN generation_response rb ON rb.id = c.response_b_id;
UPDATE comparisons_comparison c SET votes_count = (SELECT count(*) FROM comparisons_assignment a WHERE a.comparison_id = c.id)
WHERE c.campaign_id = (SELECT id FROM comparisons_campaign WHERE slug='million');
COMMIT;
-- As autovacuum would have by the time anyone reads the results: hint bits set, visibility map and statistics current.
VACUUM ANALYZE;
SELECT count(*) FROM comparisons_vote;
