SELECT
  `t0`.`customer_id`
FROM `profiles` AS `t0`
WHERE
  `t0`.`rfm_segment` IN ('champions', 'loyal')
  AND `t0`.`recency_days` <= 30
  AND NOT (
    `t0`.`frequency` < 2
  )
