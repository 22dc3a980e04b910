SELECT
  `t0`.`customer_id`
FROM `profiles` AS `t0`
WHERE
  `t0`.`monetary` / NULLIF(CAST(`t0`.`frequency` AS DOUBLE), 0.0) BETWEEN 50 AND 150.5
